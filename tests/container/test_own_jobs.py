"""The two ways to plug one's own job functions into the compose stack, as
examples/compose-own-jobs shows them: a mounted folder on PYTHONPATH, and a package installed
into an image derived from Conveyor's. A consumer that cannot find a job dead-letters it, so
"done" proves the registry named by CONVEYOR_JOBS was loaded and ran the job.
"""

from __future__ import annotations

import pytest

from tests.container.client import JobSpec, job_client, wait_settled
from tests.container.engine import DockerEngine
from tests.container.features import Features
from tests.container.images import StackImages, build_image
from tests.container.stack import ComposeStack, MakeStack
from tests.helpers_process import ROOT

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

EXAMPLE = ROOT / "examples" / "compose-own-jobs"


def _runs(stack: ComposeStack, features: Features, job: JobSpec, *, http_port: int) -> str | None:
    """Bring the stack up with one consumer, submit ``job``; its status once it has ended."""
    stack.up(features.services(), consumers=1)
    client = job_client(stack, features, http_port=http_port)
    client.submit([job])
    return wait_settled(client, [job], deadline_s=60)[job.job_id]


def test_jobs_in_a_mounted_folder_run(
    make_stack: MakeStack, features: Features, http_port: int
) -> None:
    # Given the stack with mount.yml and CONVEYOR_JOBS naming the mounted module's registry
    stack = make_stack(EXAMPLE / "mount.yml", CONVEYOR_JOBS="greetings:registry")
    # When a job of that module is submitted, Then a consumer runs it
    job = JobSpec("greet-1", "greet", ("compose",))
    status = _runs(stack, features, job, http_port=http_port)
    assert status == "done", stack.logs()


def test_jobs_of_a_package_installed_in_a_derived_image_run(
    engine: DockerEngine,
    images: StackImages,
    features: Features,
    make_stack: MakeStack,
    http_port: int,
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
    job = JobSpec("count-1", "word_count", ("one two",))
    status = _runs(stack, features, job, http_port=http_port)
    assert status == "done", stack.logs()
