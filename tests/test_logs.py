"""Logs: ``--log-format json`` gives JSON lines only, on every command and in every process it
starts; text stays the default; passwords and tokens never reach a log line in either format."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from producer import Producer
from services.backends import open_queue
from services.cli.app import COMMANDS, main
from services.cli.lazy import load_command
from services.cli.logging_options import with_logging
from services.logs import (
    JsonFormatter,
    LogFormat,
    LogSettings,
    TextFormatter,
    redact,
    setup_logging,
)
from tests import jobs
from tests.redis_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent
JOBS = "tests.jobs:registry"
SECRET = "s3cret-Pa55word"
KEYS = {"ts", "level", "logger", "msg", "pid", "process"}


def conveyor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m consumer ARGS`` with a clean environment (plus ``env``), to the end."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        cwd=ROOT,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(more: dict[str, str] | None) -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    found["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), found.get("PYTHONPATH")]))
    return {**found, **(more or {})}


def json_lines(stderr: str) -> list[dict[str, object]]:
    """Every line of ``stderr``, each of which must be one JSON object with the stable keys."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}\n--- stderr ---\n{stderr}")
        assert isinstance(record, dict)
        assert set(record) >= KEYS, record
        parsed.append(record)
    return parsed


# -- the formatters ---------------------------------------------------------------------------
def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("conveyor.worker", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_the_stable_keys_and_the_context_known() -> None:
    formatter = JsonFormatter(process="worker-3", consumer="host:1:3.1")
    line = json.loads(formatter.format(_record("job %s timed out", "abc", job="abc")))
    assert line["level"] == "WARNING"
    assert line["logger"] == "conveyor.worker"
    assert line["msg"] == "job abc timed out"
    assert (line["process"], line["consumer"], line["job"]) == ("worker-3", "host:1:3.1", "abc")
    assert line["ts"].endswith("+00:00")
    assert isinstance(line["pid"], int)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"redis://app:{SECRET}@db:6379/0", "redis://app:***@db:6379/0"),
        (f"rediss://:{SECRET}@db/1 is down", "rediss://:***@db/1 is down"),
        (f"Authorization: Bearer {SECRET}.x-y", "Authorization: Bearer ***"),
        (
            f'"GET /v1/queues?a=1&token={SECRET} HTTP/1.1"',
            '"GET /v1/queues?a=1&token=*** HTTP/1.1"',
        ),
        (f"/x?access_token={SECRET}&n=2", "/x?access_token=***&n=2"),
        (
            "redis://db:6379/0 and http://example.com/a@b",
            "redis://db:6379/0 and http://example.com/a@b",
        ),
    ],
)
def test_credentials_are_scrubbed(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_both_formats_scrub_messages_arguments_and_tracebacks() -> None:
    try:
        raise ConnectionError(f"cannot reach redis://u:{SECRET}@h:1/0")
    except ConnectionError:
        record = _record("token %s", f"bearer {SECRET}")
        record.exc_info = sys.exc_info()
    text = TextFormatter("%(message)s").format(record)
    line = JsonFormatter(process="main").format(record)
    for shown in (text, line):
        assert SECRET not in shown
        assert "***" in shown
    assert "ConnectionError" in json.loads(line)["exc"]


def test_setup_replaces_its_own_handler_and_writes_to_the_current_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a root logger with no handler (as in a fresh process)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    # When logging is set up twice, then stderr is replaced
    setup_logging(LogSettings(logging.INFO, LogFormat.TEXT))
    setup_logging(LogSettings(logging.INFO, LogFormat.JSON), process="worker-0")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logging.getLogger("conveyor.test").info("hello")
    # Then one handler writes the latest format to the stream stderr is now
    assert len(root.handlers) == 1
    assert json.loads(stream.getvalue())["process"] == "worker-0"


# -- every command ----------------------------------------------------------------------------
def _commands() -> Iterator[tuple[str, click.Command]]:
    for name, entry in COMMANDS.items():
        command = with_logging(load_command(entry.target))
        yield name, command
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield f"{name} {sub_name}", sub


@pytest.mark.parametrize(("name", "command"), list(_commands()))
def test_every_command_takes_the_logging_flags_after_its_name(
    name: str, command: click.Command
) -> None:
    flags = {flag for param in command.params for flag in param.opts}
    assert {"--log-format", "--log-level"} <= flags, name


@pytest.fixture
def queue_url(redis_url: str) -> str:
    """The session's Redis with three jobs waiting (one always fails) and one dead letter."""
    queue = open_queue(redis_url)
    producer = Producer(queue, registry=jobs.registry)
    producer.enqueue_many([("add", [1, 2], {}), ("echo", ["x"], {}), ("fail", ["boom"], {})])
    queue.close()
    result = conveyor("worker", "--url", redis_url, "--jobs", JOBS, "--burst", "-c", "1",
                      "--retry-backoff", "0.01")  # fmt: skip
    assert result.returncode == 0, result.stderr
    producer_queue = open_queue(redis_url)
    Producer(producer_queue, registry=jobs.registry).enqueue_many(
        [("add", [1, 2], {}), ("fail", ["boom"], {})]
    )
    producer_queue.close()
    return redis_url


def _invocations(url: str) -> dict[str, list[str]]:
    return {
        "run": ["run", "--jobs", JOBS, "--feed", "tests.feeds:small_feed", "--count", "6",
                "--producers", "2", "-c", "2", "--retry-backoff", "0.01"],
        "worker": ["worker", "--url", url, "--jobs", JOBS, "--burst", "-c", "2",
                   "--retry-backoff", "0.01"],
        "enqueue": ["enqueue", "add", "1", "2", "--url", url],
        "dead-letters list": ["dead-letters", "list", "--url", url],
        "dead-letters requeue": ["dead-letters", "requeue", "--url", url, "nosuchid"],
    }  # fmt: skip


@pytest.mark.redis
@pytest.mark.parametrize("where", ["after", "before", "environment"])
def test_each_command_logs_only_json_lines_when_asked(queue_url: str, where: str) -> None:
    for name, args in _invocations(queue_url).items():
        # When each command runs with the JSON format (flag after or before it, or the variable)
        if where == "after":
            result = conveyor(*args, "--log-format", "json")
        elif where == "before":
            result = conveyor("--log-format", "json", *args)
        else:
            result = conveyor(*args, env={"CONVEYOR_LOG_FORMAT": "json"})
        # Then stderr holds JSON lines only (a failed requeue included)
        assert result.returncode == (1 if name == "dead-letters requeue" else 0), result.stderr
        records = json_lines(result.stderr)
        assert records or name == "enqueue", name  # enqueue has nothing to log: its id is stdout
        if name in ("run", "worker"):  # the worker processes log JSON too
            processes = {str(record["process"]) for record in records}
            assert any(process.startswith("worker-") for process in processes), processes
            assert any("consumer" in record for record in records)


@pytest.mark.redis
def test_text_stays_the_default(queue_url: str) -> None:
    result = conveyor("worker", "--url", queue_url, "--jobs", JOBS, "--burst", "-c", "1",
                      "--retry-backoff", "0.01")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines
    assert not any(line.startswith("{") for line in lines)
    assert any(" worker-0 WARNING dead-lettered job " in line for line in lines), lines


@pytest.mark.redis
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_password_in_the_url_never_reaches_a_log_line(redis_url: str, log_format: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    refused = f"redis://app:{SECRET}@127.0.0.1:{port}/0"  # no such user: AUTH fails
    fmt = ("--log-format", log_format)
    runs = [
        conveyor("worker", "--url", refused, "--jobs", JOBS, *fmt),
        conveyor("enqueue", "add", "1", "2", "--url", refused, *fmt),
        conveyor("dead-letters", "list", "--url", refused, *fmt),
        conveyor("run", "--url", refused, "--jobs", JOBS, *fmt),
    ]
    for result in runs:
        assert result.returncode == 2, result.stderr
        assert "refused the credentials" in result.stderr
        assert SECRET not in result.stderr + result.stdout
        if log_format == "json":
            json_lines(result.stderr)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_password_never_shows_while_a_worker_waits_for_its_redis(
    tmp_path: Path, log_format: str
) -> None:
    # Given a worker whose Redis (password in a file) cannot be reached yet
    password_file = tmp_path / "password"
    password_file.write_text(SECRET)
    url = f"redis://app@127.0.0.1:{free_port()}/0"
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "worker", "--url", url, "--jobs", JOBS,
             "--password-file", str(password_file), "--log-format", log_format],
            cwd=ROOT, env=_env(None), stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # When it has logged its retries
            deadline = time.monotonic() + 30
            while log_path.read_text().count("retrying in") < 2:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    # Then the URL shows, its password never
    text = log_path.read_text()
    assert "redis://app:***@127.0.0.1" in text
    assert SECRET not in text
    if log_format == "json":
        json_lines(text)


def test_the_group_level_flag_reaches_the_commands_settings() -> None:
    from click.testing import CliRunner

    seen: list[object] = []

    @click.command("probe")
    @click.pass_obj
    def probe(settings: object) -> None:
        seen.append(settings)

    main.add_command(with_logging(probe))
    try:
        runner = CliRunner(env={"CONVEYOR_LOG_FORMAT": None, "CONVEYOR_LOG_LEVEL": None})
        result = runner.invoke(main, ["--log-level", "DEBUG", "probe", "--log-format", "json"])
    finally:
        main.commands.pop("probe")
    assert result.exit_code == 0, result.output
    assert seen == [LogSettings(logging.DEBUG, LogFormat.JSON)]


@pytest.mark.redis
def test_serve_logs_json_only_and_never_its_token(redis_url: str, tmp_path: Path) -> None:
    # Given conveyor serve with a bearer token, logging JSON (uvicorn's own lines included)
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "serve", "--url", redis_url,
             "--port", str(port), "--token-file", str(token_file), "--log-format", "json"],
            cwd=ROOT, env=_env(None), stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
        try:
            # When clients call it with the right token, a wrong one and a token in the URL
            _wait_until_up(port)
            for token in (SECRET, f"{SECRET}-wrong"):
                _get(f"http://127.0.0.1:{port}/v1/queues", token)
            _get(f"http://127.0.0.1:{port}/v1/queues?token={SECRET}", None)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    # Then every line on stderr is JSON, and the token appears in none
    text = log_path.read_text()
    records = json_lines(text)
    assert any(record["logger"] == "uvicorn.access" for record in records), text
    assert SECRET not in text


def _wait_until_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(f"http://127.0.0.1:{port}/healthz", None)
            return
        except OSError:
            assert time.monotonic() < deadline, "conveyor serve did not answer /healthz"
            time.sleep(0.05)


def _get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
