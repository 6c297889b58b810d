"""Process exit codes, so scripts and supervisors can tell what happened.

``conveyor worker`` exits with OK after a graceful stop and after the SIGQUIT hard stop (every
unfinished job was handed back: nothing is lost), with BOOT_FAILURE when a worker cannot start
at all (bad ``--jobs``, bad configuration: restarting would not help; a job that exits with
this code after its worker booted is an ordinary crash), and with ERROR for anything else.
RECYCLE and CONFIG_FAILURE are private between a child and its supervisor: "replace me, I am
fine", and "the backend refuses our configuration (credentials, ACL) while running": the
supervisor stops with USAGE instead of restarting children that would be refused again.
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
CONFIG_FAILURE = 78
"""A child met a configuration error after it booted (EX_CONFIG of sysexits.h)."""
