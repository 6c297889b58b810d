"""Configuration that enters through flags, URLs and settings: refused clearly, or honoured.

* URL query options that would override the backend's safety settings are refused;
* queue names and job ids are checked wherever they enter (flags, environment, settings);
* job results are capped (``--max-result-bytes``): an oversized result fails the job;
* ``--jobs``/``--feed`` modules are found in the working directory, like ``python -m``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from consumer.execution import execute
from services.backends.redis.connection import make_client, phrase
from services.cli.app import main
from services.errors import ConfigError
from services.job import Job
from services.names import InvalidNameError
from services.registry import Registry
from services.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
CLEAN_ENV = {name: None for name in os.environ if name.startswith("CONVEYOR_")}


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env={**CLEAN_ENV, **(env or {})}).invoke(main, list(args))


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- URL query options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["ssl_cert_reqs=none", "socket_timeout=100", "retry_on_timeout=yes", "health_check_interval=0"],
)
def test_url_options_that_weaken_the_backend_are_refused(query: str) -> None:
    with pytest.raises(ConfigError, match=query.partition("=")[0]):
        make_client(f"rediss://localhost:1/0?{query}", timeout_s=1.0)


def test_harmless_url_options_are_accepted() -> None:
    client = make_client("unix:///tmp/none.sock?db=2&client_name=w1", timeout_s=1.0)
    assert client.connection_pool.connection_kwargs["db"] == 2
    client.connection_pool.disconnect()


def test_the_cli_refuses_a_weakening_url_option_in_one_line() -> None:
    url = "rediss://localhost:1/0?ssl_cert_reqs=none"
    result = invoke("dead-letters", "list", "--url", url)
    assert_one_line_error(result, "ssl_cert_reqs", "not accepted")
    assert "--url" in invoke("worker", "--help").output and "ssl_cert_reqs" in (
        invoke("worker", "--help").output
    )


def test_redis_errors_name_the_operation_in_words() -> None:
    assert phrase("check_server") == "cannot check the Redis server"
    assert phrase("put") == "cannot enqueue"
    assert phrase("some_new_call") == "cannot some new call"  # never a bare method name


def test_with_result_cap_copies_the_registry() -> None:
    registry = Registry()
    registry.add(big)
    capped = registry.with_result_cap(10)
    assert capped.get("big").max_result_bytes == 10
    assert registry.get("big").max_result_bytes == 1024 * 1024


# -- names ------------------------------------------------------------------------------------

BAD_NAMES = ["", "a b", "new\nline", "nul\0", "x" * 5000, "-starts-with-dash"]


@pytest.mark.parametrize(
    "name", BAD_NAMES, ids=["empty", "space", "newline", "nul", "5000", "dash"]
)
@pytest.mark.parametrize(
    "command",
    [
        ["enqueue", "add", "1", "--url", "redis://localhost:1/0"],
        ["worker", "--url", "redis://localhost:1/0", "--jobs", "tests.jobs:registry"],
        ["run", "--count", "1"],
        ["dead-letters", "list", "--url", "memory://"],
    ],
    ids=["enqueue", "worker", "run", "dead-letters"],
)
def test_every_queue_flag_refuses_a_bad_name(command: list[str], name: str) -> None:
    if "\0" in name:  # an argv entry cannot hold NUL: it can only come from the API
        with pytest.raises(InvalidNameError):
            WorkerSettings(queues=(name,))
        return
    result = invoke(*command, "--queue", name)
    assert_one_line_error(result, "invalid queue name")


def test_the_queue_from_the_environment_is_checked_too() -> None:
    result = invoke("dead-letters", "list", "--url", "memory://", env={"CONVEYOR_QUEUE": "a/b"})
    assert_one_line_error(result, "invalid queue name 'a/b'")


def test_requeue_refuses_a_malformed_job_id() -> None:
    result = invoke("dead-letters", "requeue", "--url", "memory://", "bad id")
    assert_one_line_error(result, "invalid job id")


def test_worker_settings_check_their_queue_names() -> None:
    with pytest.raises(InvalidNameError):
        WorkerSettings(queues=("ok", "not ok"))
    with pytest.raises(ConfigError):
        WorkerSettings(queues=())
    assert WorkerSettings(queues=("mail.high", "a:b-c_d")).queues == ("mail.high", "a:b-c_d")


# -- result cap -------------------------------------------------------------------------------


def big(size: int) -> str:
    return "x" * size


def test_a_result_over_the_cap_fails_the_job_with_a_clear_error() -> None:
    registry = Registry()
    registry.add(big)
    capped = registry.with_result_cap(1000)
    # A result of 998 characters is 1000 bytes as JSON (with its quotes): at the cap, stored
    fits = execute(capped.get("big"), Job(name="big", args=(998,)))
    assert fits.ok and fits.result is not None and len(fits.result) == 1000
    # One more byte fails the job, so it is retried and then dead-lettered
    over = execute(capped.get("big"), Job(name="big", args=(999,)))
    assert not over.ok and over.result is None
    assert over.error is not None and "1001 bytes" in over.error
    assert "--max-result-bytes" in over.error


def test_the_default_result_cap_is_one_mebibyte() -> None:
    registry = Registry()
    registry.add(big)
    over = execute(registry.get("big"), Job(name="big", args=(1024 * 1024,)))
    assert not over.ok and "over the limit of 1048576" in (over.error or "")


# -- the working directory is importable ------------------------------------------------------


def conveyor_script() -> str:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("conveyor", path=search)
    assert found, "the conveyor console script is not installed in this environment"
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder holding ``myapp/jobs.py`` and ``myapp/feeds.py``."""
    app = tmp_path / "myapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "jobs.py").write_text(
        textwrap.dedent(
            """
            from services.registry import Registry

            registry = Registry()

            @registry.job
            def double(x: int) -> int:
                return 2 * x

            @registry.job(max_retries=1)
            def big(size: int) -> str:
                return "x" * size
            """
        )
    )
    (app / "feeds.py").write_text(
        "def feed(count=4):\n    for i in range(count):\n        yield ('double', [i], {})\n"
        "def big_feed():\n    yield ('big', [10], {})\n    yield ('big', [100], {})\n"
    )
    return tmp_path


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.pop("PYTHONPATH", None)  # only the working directory may make myapp importable
    return subprocess.run(
        [conveyor_script(), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_finds_the_users_modules_in_the_working_directory(project: Path) -> None:
    # Given a project folder, When `conveyor run` starts there with its jobs and feed
    result = run_in(
        project, "run", "--jobs", "myapp.jobs:registry", "--feed", "myapp.feeds:feed",
        "--concurrency", "1", "--producers", "1",
    )  # fmt: skip
    # Then the parent, the producer and the worker processes all import myapp
    assert result.returncode == 0, result.stderr
    assert "No module named" not in result.stderr


def test_enqueue_checks_against_a_registry_in_the_working_directory(project: Path) -> None:
    # When enqueue checks a job name against myapp's registry (before reaching any Redis)
    url = "redis://127.0.0.1:1/0"
    result = run_in(project, "enqueue", "nope", "--jobs", "myapp.jobs:registry", "--url", url)
    # Then it found the module and names the unknown job
    assert "No module named" not in result.stderr
    assert "unknown job 'nope'" in result.stderr, result.stderr


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("conveyor ")


def test_run_dead_letters_a_job_whose_result_is_over_max_result_bytes(project: Path) -> None:
    # Given a job returning 12 bytes of JSON and one returning 102, and a cap of 50 bytes
    result = run_in(
        project, "run", "--jobs", "myapp.jobs:registry", "--feed", "myapp.feeds:big_feed",
        "--max-result-bytes", "50", "--concurrency", "1", "--producers", "1",
    )  # fmt: skip
    # Then the small one is done, the large one retried once and dead-lettered, saying why
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert re.search(r"^  done\s+1$", output, re.M), output
    assert re.search(r"^  dead-lettered\s+1$", output, re.M), output
    assert "ResultTooLargeError" in output and "102 bytes" in output
