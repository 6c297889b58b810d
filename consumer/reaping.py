"""What the supervisor does once a child process has ended: decide, reclaim, remember, log.

::

    seat + exit code -> Death -> restart_policy.decide -> reclaim its jobs (suspects: what it
    was running, or all it held after repeated idle deaths) -> the seat: retired, or restarted
    after the decided delay; HALT returns the supervisor's exit code

The process must have been joined already; the seat is left empty (``Seat.cleared``). A seat a
shrink sent away is retired whatever its exit: the supervisor then removes it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from consumer.process_handle import ProcessHandle
from consumer.restart_policy import Action, Decision, RestartPolicy, decide, describe_exit
from consumer.seats import Seat
from services import exitcodes
from services.errors import ConveyorError
from services.protocol import ConsumerControl

log = logging.getLogger("conveyor.supervisor")


class Reaper:
    """Acts on ended children for one supervisor: its queue, restart policy and burst flag."""

    def __init__(self, queue: ConsumerControl, policy: RestartPolicy, *, burst: bool) -> None:
        self._queue = queue
        self._policy = policy
        self._burst = burst

    def after_exit(
        self, seat: Seat, process: ProcessHandle, *, now: float, stopping: bool
    ) -> int | None:
        """Act on the end of ``seat``'s ``process``; the supervisor's exit code if it must
        halt."""
        running = seat.running_jobs()
        death = seat.death(
            process.exitcode, now, running=running, stopping=stopping, burst=self._burst
        )
        decision = decide(death, self._policy)
        how = describe_exit(process.exitcode)
        suspects = None if decision.count_all_held else running
        reclaimed = self.reclaim(seat, f"worker died: {how}", suspects)
        seat.cleared()
        seat.failures, seat.idle_deaths = decision.failures, decision.idle_deaths
        if decision.action is Action.HALT:
            why = "cannot start" if decision.exit_code == exitcodes.BOOT_FAILURE else "was refused"
            log.error("worker-%d %s (see its error above); stopping", seat.index, why)
            return decision.exit_code
        if decision.action is Action.RETIRE:
            seat.retired = True
            level = logging.INFO if seat.leaving else logging.DEBUG
            log.log(level, "worker-%d (pid %s) ended: %s", seat.index, process.pid, how)
            return None
        seat.start_after = now + decision.delay_s
        _log_restart(seat.index, process.pid, how, reclaimed, decision)
        return None

    def reclaim(self, seat: Seat, reason: str, suspects: Collection[str] | None) -> int:
        """Hand back a dead child's jobs; ``suspects`` (None: all) count as crash
        redeliveries."""
        try:
            return self._queue.reclaim(seat.consumer_id, reason, suspects=suspects)
        except ConveyorError as exc:
            # Not lost: the backend's lease expiry hands the jobs back once it is reachable.
            log.warning(
                "cannot hand back worker-%d's jobs now (%s); its lease will", seat.index, exc
            )
            return 0


def _log_restart(index: int, pid: int | None, how: str, reclaimed: int, decision: Decision) -> None:
    if not decision.crashed:
        log.info("worker-%d (pid %s) recycled", index, pid)
        return
    counted = (
        f"; it died {decision.idle_deaths} times in a row without starting a job, so they "
        "count as crash redeliveries"
        if decision.count_all_held
        else ""
    )
    log.warning(
        "worker-%d (pid %s) died: %s; %d job(s) handed back%s; restarting in %.1f s",
        index,
        pid,
        how,
        reclaimed,
        counted,
        decision.delay_s,
    )
