"""The compose stack on a real Docker engine: up, jobs in over HTTP, scaled to three
consumers, a ``stop`` while jobs run (SIGTERM to every container), up again, and every job the
test submitted ends done or dead: none lost, none stuck. Then the demo profile.

Run it with ``pytest -m container tests/container`` (the default run deselects it). It starts
its own dockerd and builds its images from Debian's packages: about 3.5 minutes with no cache,
1.5 to 2.5 with one. With no engine it fails, it does not skip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from tests.container.client import JobsApi, JobSpec
from tests.container.engine import wait_until
from tests.container.stack import ComposeStack

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

_SCRAPE = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
# Long enough for a lease to run out (15 s) and the reclaimed jobs to run again.
_SETTLE_DEADLINE_S = 180.0


def _count_done(api: JobsApi, jobs: Sequence[JobSpec]) -> int:
    statuses = api.statuses([job.job_id for job in jobs])
    return sum(status == "done" for status in statuses.values())


def test_stack_scales_and_loses_no_job_across_a_stop(stack: ComposeStack, api: JobsApi) -> None:
    started = time.monotonic()
    quick = [JobSpec(f"quick-{n}", "download", (0.05,)) for n in range(30)]
    broken = [JobSpec(f"broken-{n}", "broken", ("on purpose",)) for n in range(2)]
    slow = [JobSpec(f"slow-{n}", "download", (1.0,)) for n in range(60)]

    # Given the stack up with one consumer
    stack.up(consumers=1)
    print(f"[container] up with one consumer: {time.monotonic() - started:.1f} s")

    # When jobs go in over HTTP and the consumers are scaled to three
    api.submit([*quick, *broken])
    stack.up(consumers=3)

    # Then all of them end: the good ones done, the broken ones dead-lettered after retries
    first = api.wait_settled([*quick, *broken], deadline_s=_SETTLE_DEADLINE_S)
    assert {first[job.job_id] for job in quick} == {"done"}, first
    assert {first[job.job_id] for job in broken} == {"dead"}, first
    # And the consumers' metrics are served on the compose network, not only on loopback
    scraped = stack.exec("consumer", "python", "-c", _SCRAPE, "http://consumer:9100/metrics")
    assert "conveyor_" in scraped, scraped

    # When the stack is stopped while slow jobs run
    api.submit(slow)
    wait_until(lambda: _count_done(api, slow) >= 6, deadline_s=60, what="the slow jobs to run")
    assert _count_done(api, slow) < len(slow), "all slow jobs ended before the stop"
    stop_began = time.monotonic()
    stack.stop()
    print(f"[container] stop under load: {time.monotonic() - stop_began:.1f} s")

    # Then each container stopped on its SIGTERM (tini passed it on; the workers drained
    # within their shutdown timeout: exit 0, not 137 for a SIGKILL)
    stopped = stack.containers()
    assert {each.status for each in stopped} == {"exited"}, stopped
    assert {each.exit_code for each in stopped} == {0}, stopped

    # And after up again, every job the test submitted ends done or dead: none lost
    stack.up(consumers=3)
    final = api.wait_settled([*quick, *broken, *slow], deadline_s=_SETTLE_DEADLINE_S)
    assert {final[job.job_id] for job in [*quick, *slow]} == {"done"}, final
    assert {final[job.job_id] for job in broken} == {"dead"}, final
    print(f"[container] whole stack test: {time.monotonic() - started:.1f} s")


def test_demo_profile_feeds_jobs_through_the_http_api(stack: ComposeStack) -> None:
    # Given the stack up
    stack.up(consumers=1)
    # When the demo profile runs, Then it submits its jobs over HTTP and exits 0
    out = stack.compose("--profile", "demo", "run", "--rm", "demo")
    assert "demo: submitted 300 jobs" in out, out
