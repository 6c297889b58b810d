"""The ``conveyor`` command: help, usage errors, and whole ``conveyor run`` pipelines.

In-process through click's ``CliRunner`` where that is enough; as real subprocesses (``python -m
consumer`` and the ``conveyor`` console script) where the process boundary is the point. Also:
how the command is assembled (``services.cli.app``): its table, the ``dead`` alias, the old
entry point, and that listing the commands imports none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from services.cli.app import COMMANDS, main
from services.cli.lazy import load_command
from tests.feeds import call_for, expected_outcome

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120
# The tests must not pick up a developer's settings from the environment.
CLEAN_ENV = {name: None for name in os.environ if name.startswith("CONVEYOR_")}


def invoke(*args: str) -> Result:
    return CliRunner(env=CLEAN_ENV).invoke(main, list(args))


def conveyor_command() -> list[str]:
    """The installed console script (the venv's first), else ``python -m consumer``."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    script = shutil.which("conveyor", path=search)
    return [script] if script else [sys.executable, "-m", "consumer"]


LAUNCHERS = {
    "module": lambda: [sys.executable, "-m", "consumer"],
    "console-script": conveyor_command,
}


def run_process(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    # The console script's sys.path does not hold the repository: tests.* must be importable.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


SUMMARY_LINE = re.compile(r"^  (produced|done|retried|dead-lettered|unaccounted)\s+(-?\d+)$", re.M)


def parse_summary(text: str) -> dict[str, int]:
    """The figures of the summary block that ``conveyor run`` prints."""
    assert "\nsummary\n" in text, f"no summary in output:\n{text}"
    figures = {name: int(value) for name, value in SUMMARY_LINE.findall(text)}
    assert set(figures) == {"produced", "done", "retried", "dead-lettered", "unaccounted"}, text
    return figures


def assert_one_line_error(result_stderr: str, *needles: str) -> None:
    assert "Traceback" not in result_stderr
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


# -- help -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ([], ["run", "worker", "enqueue", "dead-letters", "dead ", "--log-level", "--version"]),
        (
            ["run"],
            [
                "--count",
                "--producers",
                "--feed",
                "--jobs",
                "--concurrency",
                "--pool",
                "--password-file",
                "--max-result-bytes",
            ],
        ),
        (
            ["worker"],
            [
                "--url",
                "--jobs",
                "--queue",
                "--burst",
                "--lease",
                "CONVEYOR_URL",
                "--password-file",
                "--max-result-bytes",
                "retried",
                "ssl_cert_reqs",
            ],
        ),
        (
            ["enqueue"],
            ["NAME", "--url", "--kwarg", "--delay", "--jobs", "--queue", "--password-file"],
        ),
        (["dead-letters"], ["list", "requeue"]),
        (["dead"], ["list", "requeue"]),
        (
            ["dead-letters", "list"],
            ["--url", "--queue", "--limit", "--password-file", "CONVEYOR_QUEUE"],
        ),
        (
            ["dead-letters", "requeue"],
            ["--url", "--queue", "JOB_IDS", "--password-file", "CONVEYOR_QUEUE"],
        ),
    ],
    ids=["conveyor", "run", "worker", "enqueue", "dead-letters", "dead", "list", "requeue"],
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(command: list[str], mentions: list[str], flag: str) -> None:
    # When a command's help is asked for / Then it exits 0 and documents its key options
    result = invoke(*command, flag)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    for mention in mentions:
        assert mention in result.stdout


# -- how the command is assembled ------------------------------------------------------------
def test_the_command_list_shows_each_commands_own_summary() -> None:
    # Given the table's summary of each command, and the command itself
    for name, entry in COMMANDS.items():
        command = load_command(entry.target)
        # Then the line `conveyor --help` shows is the one the command's docstring gives
        for limit in (45, 200):
            shown = click.Command(name, help=entry.summary).get_short_help_str(limit)
            assert shown == command.get_short_help_str(limit), name


def test_listing_the_commands_imports_none_of_them() -> None:
    # When `conveyor --help` and `conveyor enqueue --help` run in a fresh interpreter
    probe = (
        "import sys\n"
        "from services.cli.app import main\n"
        "main(sys.argv[1:], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'producer', 'consumer'}))\n"
    )
    listed = run_process([sys.executable, "-c", probe], "--help")
    enqueue = run_process([sys.executable, "-c", probe], "enqueue", "--help")
    # Then listing imported no command, and enqueue's help no consumer module
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "[]"
    assert enqueue.returncode == 0, enqueue.stderr
    imported = enqueue.stdout.splitlines()[-1]
    assert "producer.cli" in imported and "consumer" not in imported


def test_dead_is_the_short_name_of_dead_letters() -> None:
    short = invoke("dead", "list", "--url", "memory://")
    long = invoke("dead-letters", "list", "--url", "memory://")
    assert (short.exit_code, short.stdout, short.stderr) == (0, long.stdout, long.stderr)
    assert " dead requeue [OPTIONS] [JOB_IDS]..." in invoke("dead", "requeue", "-h").stdout


def test_the_old_entry_point_is_the_same_command() -> None:
    from consumer.cli import main as old_main

    assert old_main is main
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"conveyor": "services.cli.app:main"}


# -- usage errors -----------------------------------------------------------------------------
def test_worker_refuses_the_memory_queue() -> None:
    # When a standalone worker is pointed at memory://
    result = invoke("worker", "--url", "memory://", "--jobs", "services.demo:registry")

    # Then it exits 2 with one line that points at `conveyor run`
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "memory://", "`conveyor run`")


def test_enqueue_refuses_the_memory_queue() -> None:
    result = invoke("enqueue", "x", "--url", "memory://")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "memory://", "conveyor enqueue", "redis://")
    assert result.stdout == ""  # no job id was printed


def test_worker_needs_a_url() -> None:
    result = invoke("worker", "--jobs", "services.demo:registry")
    assert result.exit_code == 2
    assert "Missing option '--url'" in result.stderr


def test_unknown_url_scheme() -> None:
    result = invoke("dead-letters", "list", "--url", "ftp://example.com/")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unsupported queue URL", "memory://", "redis://")


@pytest.mark.parametrize(
    ("jobs", "needles"),
    [
        ("conveyor_no_such_module:registry", ["cannot import 'conveyor_no_such_module'"]),
        ("services.demo:nope", ["'services.demo' has no 'nope'"]),
        ("services.demo", ["must look like 'package.module:attribute'"]),
        ("services.demo:feed", ["is a function, not a conveyor Registry"]),
    ],
    ids=["no-module", "no-attribute", "malformed", "not-a-registry"],
)
@pytest.mark.parametrize(
    "command",
    [["run", "--count", "1"], ["worker", "--url", "redis://127.0.0.1:1/0"]],
    ids=["run", "worker"],
)
def test_bad_jobs_path(command: list[str], jobs: str, needles: list[str]) -> None:
    # When --jobs names no registry (the worker fails before connecting anywhere)
    result = invoke(*command, "--jobs", jobs)

    # Then exit 2, one clear line, no traceback, nothing started
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.stderr, f"--jobs {jobs!r}", *needles)


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["enqueue", "x", "--url", "redis://127.0.0.1:1/0", "--kwarg"], "--kwarg"),
        (["run", "--feed-arg"], "--feed-arg"),
    ],
    ids=["enqueue", "run"],
)
def test_bad_kwarg_is_a_usage_error_naming_its_own_flag(command: list[str], option: str) -> None:
    result = invoke(*command, "no-equals")
    assert result.exit_code == 2
    assert f"Invalid value for {option}: 'no-equals' is not key=value" in result.stderr
    assert "Traceback" not in result.stderr


def test_dead_letters_of_a_fresh_memory_queue() -> None:
    result = invoke("dead-letters", "list", "--url", "memory://")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "0 dead letter(s) shown" in result.stderr


# -- whole runs -------------------------------------------------------------------------------
def test_run_in_process_accounts_for_every_job() -> None:
    # When the demo runs 40 jobs with two producers and two worker processes
    result = invoke("run", "--count", "40", "--producers", "2", "--concurrency", "2")

    # Then it exits 0, and every produced job is done or dead-lettered
    assert result.exit_code == 0, result.output
    figures = parse_summary(result.stdout)
    assert figures["produced"] == 40
    assert figures["unaccounted"] == 0
    assert figures["done"] + figures["dead-lettered"] == 40
    assert "conveyor run: 2 producer(s), processes pool x2" in result.stderr


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_run_as_a_real_process(launcher: str) -> None:
    # When `conveyor run --count 30` runs as its own process
    done = run_process(LAUNCHERS[launcher](), "run", "--count", "30", "--concurrency", "2")

    # Then it exits 0 with a summary that accounts for all 30 jobs
    assert done.returncode == 0, done.stdout + done.stderr
    figures = parse_summary(done.stdout)
    assert figures["produced"] == 30
    assert figures["unaccounted"] == 0
    assert figures["done"] + figures["dead-lettered"] == 30
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("feed", ["small_feed", "plain_feed"])
def test_run_with_a_user_feed_and_registry(feed: str) -> None:
    # Given a feed of 12 calls of tests.jobs, a third of which always fail
    count = 12
    want_done, want_dead = expected_outcome(count)

    # When it runs with two producers and two workers, retrying fast
    done = run_process(
        conveyor_command(),
        "run",
        "--feed",
        f"tests.feeds:{feed}",
        "--jobs",
        "tests.jobs:registry",
        "--count",
        str(count),
        "--producers",
        "2",
        "--concurrency",
        "2",
        "--retry-backoff",
        "0.01",
    )

    # Then every call was produced once, the failing ones dead-lettered after their retries
    assert done.returncode == 0, done.stdout + done.stderr
    figures = parse_summary(done.stdout)
    assert figures["produced"] == count
    assert (figures["done"], figures["dead-lettered"]) == (want_done, want_dead)
    assert figures["retried"] == want_dead * 2  # fail has max_retries=2
    assert figures["unaccounted"] == 0
    # ... and the dead letters, grouped by error, are the failing calls
    listed = re.findall(
        r"^ +(\d+)  ValueError: feed job (\d+) fails on purpose$", done.stdout, re.M
    )
    assert [int(n) for n, _ in listed] == [want_dead]
    assert call_for(int(listed[0][1]))[0] == "fail"


def test_producer_module_help() -> None:
    done = run_process([sys.executable, "-m", "producer"], "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: python -m producer [OPTIONS] NAME [ARGS]..." in done.stdout
    assert "--url" in done.stdout


def test_producer_module_usage_error_is_one_line() -> None:
    done = run_process([sys.executable, "-m", "producer"], "x", "--url", "memory://")
    assert done.returncode == 2
    assert_one_line_error(done.stderr, "memory://")


def test_run_with_a_bad_feed_path_fails_fast() -> None:
    done = run_process(conveyor_command(), "run", "--feed", "conveyor_no_such_module:feed")
    assert done.returncode == 2
    assert_one_line_error(done.stderr, "--feed", "cannot import 'conveyor_no_such_module'")
