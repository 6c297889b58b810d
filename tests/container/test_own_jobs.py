"""The two ways to plug one's own job functions into the compose stack, as
examples/compose-own-jobs shows them: a mounted folder on PYTHONPATH, and a package installed
into an image derived from Conveyor's. The producer checks job names against the registry
CONVEYOR_JOBS names (an unknown one gets a 422), and a consumer that cannot find a job
dead-letters it, so "done" proves both loaded the user's registry and a consumer ran the job.
"""

from __future__ import annotations

import pytest

from tests.container.client import JobsApi, JobSpec
from tests.container.engine import DockerEngine
from tests.container.images import StackImages, build_image
from tests.container.stack import ComposeStack, MakeStack
from tests.helpers_process import ROOT

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

EXAMPLE = ROOT / "examples" / "compose-own-jobs"


def _runs(stack: ComposeStack, api: JobsApi, job: JobSpec) -> str | None:
    """Bring the stack up with one consumer, submit ``job``; its status once it has ended."""
    stack.up(consumers=1)
    api.submit([job])
    return api.wait_settled([job], deadline_s=60)[job.job_id]


def test_jobs_in_a_mounted_folder_run(make_stack: MakeStack, api: JobsApi) -> None:
    # Given the stack with mount.yml and CONVEYOR_JOBS naming the mounted module's registry
    stack = make_stack(EXAMPLE / "mount.yml", CONVEYOR_JOBS="greetings:registry")
    # When a job of that module is submitted, Then a consumer runs it
    status = _runs(stack, api, JobSpec("greet-1", "greet", ("compose",)))
    assert status == "done", stack.logs()


def test_jobs_of_a_package_installed_in_a_derived_image_run(
    engine: DockerEngine, images: StackImages, make_stack: MakeStack, api: JobsApi
) -> None:
    # Given an image built FROM Conveyor's with the example package installed, run by every
    # service, and CONVEYOR_JOBS naming the package's registry
    derived = "conveyor-test-reports:latest"
    build_image(
        engine,
        derived,
        context=EXAMPLE / "installed",
        build_args={"CONVEYOR_IMAGE": images.conveyor},
    )
    stack = make_stack(CONVEYOR_IMAGE=derived, CONVEYOR_JOBS="reports.jobs:registry")
    # When a job of that package is submitted, Then a consumer runs it
    status = _runs(stack, api, JobSpec("count-1", "word_count", ("one two",)))
    assert status == "done", stack.logs()
