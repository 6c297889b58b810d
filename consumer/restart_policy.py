"""What the supervisor does after a worker process ended: a pure decision, tested with fakes.

::

    Death (how it ended, did it boot, jobs settled, lifetime, failures so far)
        -> Decision (halt / retire / restart after a delay; count its held jobs as suspects?)

The rules, in order:

* Stopping, a seat a shrink sent away (``Supervisor.resize``), or a ``--burst`` child that
  exited 0: retire the seat. However its process ended, it is not restarted and no crash.
* BOOT_FAILURE from a child that never booted (bad ``--jobs``, bad configuration): halt the
  supervisor; restarting would only repeat the failure. The same code from a child that had
  booted is a job calling ``os._exit(3)``: an ordinary crash.
* CONFIG_FAILURE (the backend refused the credentials or the ACL while the child ran): halt
  with USAGE; a new child would be refused the same way.
* RECYCLE: replace it now, no backoff.
* Any other end is a crash. A child that settled a job since it started, or lived past
  ``stable_s``, was doing useful work when something killed it (OOM killer, an operator): no
  backoff. A child that died before settling anything is a candidate crash loop: capped
  exponential backoff on the seat's consecutive failures.
* The last line of defence: a seat whose children died ``count_all_after`` times in a row
  without settling or even starting a job is being killed by something it holds but never ran
  (a message that crashes the decoder, say). Its held deliveries are then all counted as crash
  redeliveries, so that the backend quarantines them and no message can loop a worker forever.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from consumer.backoff import backoff_s
from services import exitcodes


class Action(Enum):
    """What to do with the seat of a process that ended."""

    HALT = "halt"
    """Stop the supervisor with ``Decision.exit_code``."""
    RETIRE = "retire"
    """Leave the seat empty for good (stopping, a shrink, or a burst worker done)."""
    RESTART = "restart"
    """Start a new process after ``Decision.delay_s``."""


@dataclass(frozen=True)
class Death:
    """How one worker process ended, as the supervisor saw it."""

    exitcode: int | None
    booted: bool
    """It had loaded its jobs and opened its queue (``Field.BOOTED``)."""
    settled: int
    """Jobs it settled (done, failed, dead-lettered) since it started."""
    running: int
    """Jobs on its running board when it died (started and not finished)."""
    lived_s: float
    failures: int
    """Consecutive crashes of this seat before this one."""
    idle_deaths: int
    """Consecutive crashes of this seat before this one with no job settled or started."""
    stopping: bool = False
    leaving: bool = False
    """A shrink had sent it away: its seat goes, whatever the exit."""
    burst: bool = False


@dataclass(frozen=True)
class Decision:
    """The verdict on a ``Death``."""

    action: Action
    delay_s: float = 0.0
    exit_code: int = exitcodes.OK
    crashed: bool = False
    """Worth a warning: it ended by itself or by a kill, not on request."""
    failures: int = 0
    idle_deaths: int = 0
    count_all_held: bool = False
    """Count every delivery it held as a crash redelivery (``reclaim(suspects=None)``)."""


@dataclass(frozen=True)
class RestartPolicy:
    """The tunables of ``decide``."""

    base_s: float = 0.5
    cap_s: float = 30.0
    stable_s: float = 10.0
    """A child that lived this long was not crash-looping, whatever killed it."""
    count_all_after: int = 2
    """Idle deaths in a row after which a seat's held deliveries all count as suspects."""


def decide(
    death: Death, policy: RestartPolicy, *, rng: Callable[[], float] = random.random
) -> Decision:
    """The supervisor's decision for ``death`` (see the module docstring for the rules)."""
    if death.stopping or death.leaving or (death.burst and death.exitcode == exitcodes.OK):
        return Decision(Action.RETIRE)
    if death.exitcode == exitcodes.BOOT_FAILURE and not death.booted:
        return Decision(Action.HALT, exit_code=exitcodes.BOOT_FAILURE)
    if death.exitcode == exitcodes.CONFIG_FAILURE:
        return Decision(Action.HALT, exit_code=exitcodes.USAGE)
    if death.exitcode == exitcodes.RECYCLE:
        return Decision(Action.RESTART)
    return _after_crash(death, policy, rng)


def _after_crash(death: Death, policy: RestartPolicy, rng: Callable[[], float]) -> Decision:
    worked = death.settled > 0 or death.lived_s >= policy.stable_s
    failures = 0 if worked else death.failures + 1
    idle = death.settled == 0 and death.running == 0
    idle_deaths = death.idle_deaths + 1 if idle else 0
    delay = backoff_s(failures, base_s=policy.base_s, cap_s=policy.cap_s, rng=rng)
    return Decision(
        Action.RESTART,
        delay_s=delay if failures else 0.0,
        crashed=True,
        failures=failures,
        idle_deaths=idle_deaths,
        count_all_held=idle_deaths >= policy.count_all_after,
    )


def describe_exit(exitcode: int | None) -> str:
    """How a child process ended, for logs and dead-letter reasons."""
    if exitcode is None:
        return "still running"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    signum = -exitcode
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = "unknown signal"
    hint = ", out of memory?" if signum == signal.SIGKILL else ""
    return f"signal {signum} ({name}{hint})"
