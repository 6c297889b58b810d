"""Periodic jobs without processes: schedules, which due times fire (the missed-times
policy), and the scheduler's turns on the memory backend with a stepped clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consumer.scheduler import Scheduler, fire
from services.backends.memory.backend import MemoryQueue
from services.backends.memory.state import MemoryState
from services.codec import decode_job
from services.errors import JobDefinitionError
from services.periodic import PeriodicSpec, job_id_for, make_spec, plan_firing, schedule_of
from services.registry import Registry
from services.settings import QueueSettings

T0 = 1_800_000_000.0  # a whole minute (divisible by 60)


def spec(schedule: str | float = 1.0, **fields: object) -> PeriodicSpec:
    made = make_spec("tick", "tick", schedule, queue="q", args=(1,), kwargs={"k": 2},
                     missed="skip", max_catch_up=10)  # fmt: skip
    return replace(made, **fields)  # type: ignore[arg-type]


def test_interval_due_times_are_multiples_since_the_epoch() -> None:
    every = schedule_of(1.5)
    assert every.due_times(T0 + 0.2, T0 + 4.5) == [T0 + 1.5, T0 + 3.0, T0 + 4.5]
    assert every.due_times(T0, T0 + 4.5, newest=2) == [T0 + 3.0, T0 + 4.5]
    assert every.next_after(T0) == T0 + 1.5
    assert every.due_times(T0 + 1.5, T0 + 1.5) == []  # (after, upto]


def test_cron_due_times_in_utc_forward_and_newest_backward() -> None:
    five = schedule_of("*/5 * * * *")
    assert five.due_times(T0, T0 + 900) == [T0 + 300, T0 + 600, T0 + 900]
    assert five.due_times(T0 - 1, T0 + 30 * 86400, newest=2) == [T0 + 30 * 86400 - 300,
                                                                  T0 + 30 * 86400]  # fmt: skip
    assert five.next_after(T0) == T0 + 300
    assert schedule_of("0 12 * * *").next_after(T0) % 86400 == 12 * 3600


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "* * * * * *", 0.5, 0])
def test_bad_schedules_are_refused_at_registration(bad: str | float) -> None:
    with pytest.raises(JobDefinitionError):
        Registry().periodic(bad)(lambda: None)


def test_a_name_that_cannot_make_a_job_id_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match="job id"):
        Registry().periodic(60.0, name="has space")(lambda: None)


def test_first_sight_fires_nothing_and_remembers_now() -> None:
    plan = plan_firing(spec(), last=None, now=T0 + 0.4)
    assert plan.fire == () and plan.mark == T0 + 0.4


def test_late_due_times_all_fire_oldest_first() -> None:
    # A failover of 5 s: the due times in it are late, not missed, under either policy
    for missed in ("skip", "catch_up"):
        plan = plan_firing(spec(missed=missed), last=T0, now=T0 + 5.2, grace_s=60)
        assert plan.fire == tuple(T0 + k for k in range(1, 6)) and plan.mark == T0 + 5


def test_skip_drops_missed_due_times_and_fires_the_late_ones() -> None:
    plan = plan_firing(spec(), last=T0, now=T0 + 3600.5, grace_s=60)
    assert plan.fire == tuple(T0 + 3600 - 59 + k for k in range(60))
    assert plan.skipped == (T0, T0 + 3600.5 - 60)


def test_skip_with_nothing_late_moves_the_mark_past_the_missed() -> None:
    plan = plan_firing(spec("0 * * * *"), last=T0, now=T0 + 2 * 3600 + 120, grace_s=60)
    assert plan.fire == () and plan.mark == T0 + 2 * 3600 + 60


def test_catch_up_fires_the_newest_missed_then_the_late() -> None:
    hourly = spec("0 * * * *", missed="catch_up", max_catch_up=3)
    plan = plan_firing(hourly, last=T0, now=T0 + 10 * 3600 + 30, grace_s=60)
    # the 3 newest missed (7, 8, 9 h), then the late one (10 h, 30 s ago)
    assert plan.fire == tuple(T0 + h * 3600 for h in (7, 8, 9, 10))
    assert plan.mark == T0 + 10 * 3600


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def memory() -> MemoryQueue:
    return MemoryQueue(MemoryState(QueueSettings()), consumer_id="test")


def fired_ids(memory: MemoryQueue) -> list[str]:
    taken = memory.get(["q"], max_count=1000, timeout_s=0.0)
    return [decode_job(d.body).id for d in taken]


def test_the_scheduler_fires_each_due_time_once_with_its_arguments(memory: MemoryQueue) -> None:
    clock = Clock(T0 + 0.5)
    scheduler = Scheduler(memory, [spec()], lease_s=10.0, scheduler_id="a", clock=clock)
    scheduler.run_once()  # first sight: nothing fires
    for step in (1.0, 1.0, 0.2, 2.0):
        clock.now += step
        scheduler.run_once()
    taken = memory.get(["q"], max_count=100, timeout_s=0.0)
    expected = [job_id_for("tick", T0 + k) for k in (1, 2, 3, 4)]
    assert [decode_job(d.body).id for d in taken] == expected
    job = decode_job(taken[0].body)
    assert (job.name, job.args, dict(job.kwargs), job.queue) == ("tick", (1,), {"k": 2}, "q")


def test_only_the_leader_fires(memory: MemoryQueue) -> None:
    clock = Clock(T0 + 0.5)
    a, b = (Scheduler(memory, [spec()], lease_s=10.0, scheduler_id=n, clock=clock) for n in "ab")
    for _ in range(3):
        a.run_once()
        b.run_once()
        clock.now += 1.0
    assert a.leading and not b.leading and b.fired == 0
    assert fired_ids(memory) == [job_id_for("tick", T0 + k) for k in (1, 2)]


def test_schedulers_of_different_entries_each_lead_their_own(memory: MemoryQueue) -> None:
    # Given two services' workers on one backend, loading different periodic entries
    clock = Clock(T0 + 0.5)
    tick, tock = spec(), replace(spec(), name="tock")
    a = Scheduler(memory, [tick], lease_s=10.0, scheduler_id="a", clock=clock)
    b = Scheduler(memory, [tock], lease_s=10.0, scheduler_id="b", clock=clock)
    # When both turn for a few due times
    for _ in range(3):
        a.run_once()
        b.run_once()
        clock.now += 1.0
    # Then each leads its own set, and both entries fire each due time once
    assert a.leading and b.leading and a.group != b.group
    assert sorted(fired_ids(memory)) == sorted(
        job_id_for(name, T0 + k) for name in ("tick", "tock") for k in (1, 2)
    )


def test_a_restart_does_not_fire_old_due_times(memory: MemoryQueue) -> None:
    # Given a scheduler that fired up to T0 + 3 and stopped
    clock = Clock(T0 + 0.5)
    first = Scheduler(memory, [spec()], lease_s=10.0, scheduler_id="a", clock=clock)
    first.run_once()
    clock.now = T0 + 3.5
    first.run_once()
    memory.resign("a", group=first.group)
    assert len(fired_ids(memory)) == 3
    # When a new one starts at the same instant, with the old jobs' records gone (as after
    # their result TTL): only the remembered due times can stop it
    fresh = MemoryQueue(MemoryState(QueueSettings()), consumer_id="other")
    fresh._schedule = memory._schedule  # the same remembered due times, none of the jobs
    second = Scheduler(fresh, [spec()], lease_s=10.0, scheduler_id="b", clock=clock)
    second.run_once()
    # Then it fires nothing: the due times fired are remembered, not only the jobs
    assert second.leading and second.fired == 0 and fired_ids(fresh) == []
    clock.now = T0 + 4.0
    second.run_once()
    assert fired_ids(fresh) == [job_id_for("tick", T0 + 4)]


def test_a_leader_that_died_before_marking_is_not_fired_twice(memory: MemoryQueue) -> None:
    # Given due time T0 + 1 put on the queue but not marked (the leader died in between)
    clock = Clock(T0 + 0.5)
    scheduler = Scheduler(memory, [spec()], lease_s=10.0, scheduler_id="a", clock=clock)
    scheduler.run_once()
    clock.now = T0 + 1.2
    memory.mark_fired("tick", T0 + 0.5)
    assert fire(memory, spec(), T0 + 1)
    # When the next leader fires from what was marked
    memory.resign("a", group=scheduler.group)
    successor = Scheduler(memory, [spec()], lease_s=10.0, scheduler_id="b", clock=clock)
    successor.run_once()
    # Then the due time is stored once, and now marked
    assert successor.fired == 0 and fired_ids(memory) == [job_id_for("tick", T0 + 1)]
    assert memory.last_fired(["tick"]) == {"tick": T0 + 1}
