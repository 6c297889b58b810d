"""The CLI against a real Redis: a password kept out of the command line, and never logged."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-Pa55"


@pytest.fixture
def user_url(redis_url: str) -> Iterator[str]:
    """A URL for an ACL user whose password is NOT in it."""
    client = redis.Redis.from_url(redis_url)
    client.acl_setuser(
        "alice", enabled=True, passwords=[f"+{SECRET}"], keys=["*"], commands=["+@all"]
    )
    parts = urlsplit(redis_url)
    yield f"redis://alice@{parts.hostname}:{parts.port}{parts.path}"
    client.acl_deluser("alice")
    client.close()


def enqueue(
    url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "enqueue", "add", "1", "2", "--url", url, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_password_can_come_from_a_file(user_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    result = enqueue(user_url, "--password-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 32  # the job id


def test_the_password_can_come_from_the_environment(user_url: str) -> None:
    env = {**os.environ, "CONVEYOR_REDIS_PASSWORD": SECRET}
    result = enqueue(user_url, env=env)
    assert result.returncode == 0, result.stderr


def test_a_wrong_password_is_a_clear_error_that_does_not_echo_it(user_url: str) -> None:
    env = {**os.environ, "CONVEYOR_REDIS_PASSWORD": "wrong-" + SECRET}
    result = enqueue(user_url, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error:")
    assert SECRET not in result.stderr + result.stdout
