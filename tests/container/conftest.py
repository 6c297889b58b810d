"""Fixtures of the container tests: the private engine (one per session, on the cached data
root), the images built on the Debian base, a compose project per test (taken down with its
volumes afterwards) and the HTTP API it publishes. Registers the ``container`` marker and
deselects its tests unless ``-m`` names it: ``pytest -m container tests/container`` runs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.cache import cached_engine
from tests.container.client import JobsApi
from tests.container.engine import DockerEngine
from tests.container.images import StackImages, stack_images
from tests.container.stack import COMPOSE_FILE, ComposeStack, MakeStack
from tests.redis_fixtures import free_port


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "container: needs a Docker engine the test starts itself (docker.io)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The default run must not start an engine: a run whose -m does not name "container"
    # deselects these tests (what addopts = -m "not container" would do, without hiding them
    # from `pytest -m container`).
    if "container" in (config.option.markexpr or ""):
        return
    chosen = [item for item in items if item.get_closest_marker("container") is None]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    with cached_engine() as started:
        yield started


@pytest.fixture(scope="session")
def images(engine: DockerEngine) -> StackImages:
    return stack_images(engine)


@pytest.fixture
def http_port() -> int:
    return free_port()


@pytest.fixture
def api(http_port: int) -> JobsApi:
    """The producer's API, at the port the stack publishes on the host's loopback."""
    return JobsApi(f"http://127.0.0.1:{http_port}")


@pytest.fixture
def make_stack(engine: DockerEngine, images: StackImages, http_port: int) -> Iterator[MakeStack]:
    made: list[ComposeStack] = []

    def make(*extra_files: Path, **variables: str) -> ComposeStack:
        stack = ComposeStack(
            engine,
            project=f"conveyortest{uuid.uuid4().hex[:8]}",
            files=[COMPOSE_FILE, *extra_files],
            variables={
                "REDIS_IMAGE": images.redis,
                "CONVEYOR_IMAGE": images.conveyor,
                "CONVEYOR_HTTP_BIND": "127.0.0.1",
                "CONVEYOR_HTTP_PORT": str(http_port),
                **variables,
            },
        )
        made.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in made:
            # Shown when the test fails: what each container said last.
            print(stack.logs())
            stack.down()


@pytest.fixture
def stack(make_stack: MakeStack) -> ComposeStack:
    return make_stack()
