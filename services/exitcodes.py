"""Process exit codes, so scripts and supervisors can tell what happened.

``conveyor worker`` exits with OK after a graceful stop and after the SIGQUIT hard stop (every
unfinished job was handed back: nothing is lost), with BOOT_FAILURE when a worker cannot start
at all (bad ``--jobs``, bad configuration: restarting would not help; a job that exits with
this code after its worker booted is an ordinary crash), and with ERROR for anything else.
RECYCLE is private between a child and its supervisor: "replace me, I am fine".
"""

OK = 0
ERROR = 1
USAGE = 2
BOOT_FAILURE = 3
RECYCLE = 4
UNACCOUNTED = 5
"""``conveyor run`` ended with jobs neither done nor dead-lettered."""
INTERRUPTED = 130
"""``conveyor run`` was stopped by SIGINT/SIGTERM before every job was settled (128 + SIGINT)."""
