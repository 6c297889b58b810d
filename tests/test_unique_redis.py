"""What only the Redis backend shows of unique jobs: the UNIQUE script's declared keys, the
key it stores (a digest under the queue's tag, with ``PX`` for ``unique_for``), and a put whose
reply was lost being sent again safely."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest
import redis

from services.backends import open_async_queue
from services.backends.redis import keys
from services.backends.redis import scripts as lua
from services.backends.redis.unique import UNIQUE_BODY, UNIQUE_KEYS
from services.errors import BackendUnavailableError
from services.settings import QueueSettings
from services.unique_keys import key_digest
from tests.helpers_process import ROOT
from tests.redis_fixtures import MakeQueue


def test_unique_names_only_the_keys_it_declares() -> None:
    used = set(re.findall(r"\bK\.([a-z]+)", UNIQUE_BODY))
    assert used <= set(UNIQUE_KEYS), sorted(used - set(UNIQUE_KEYS))
    assert set(UNIQUE_KEYS) <= set(keys.QueueKeys.__dataclass_fields__)
    assert lua.COMMON in lua.PUT  # the helpers UNIQUE starts with are the queue scripts' own


@pytest.mark.redis
def test_the_key_is_a_digest_under_the_queue_tag_with_the_ttl(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    admin = redis.Redis.from_url(redis_url)
    hex_id = "0123456789abcdef0123456789abcdef"
    assert queue.put_unique("q", hex_id, b"{}", key="a key", ttl_s=30) == hex_id
    assert queue.put_unique("q", "order-1", b"{}", key="other", ttl_s=None) == "order-1"
    held = f"{keys.tag('q')}u:{key_digest('a key')}"
    assert admin.get(held) == b"\x00" + bytes.fromhex(hex_id)  # stored like an element's id
    assert 0 < admin.pttl(held) <= 30_000
    other = f"{keys.tag('q')}u:{key_digest('other')}"
    assert admin.get(other) == bytes([7]) + b"order-1"
    assert admin.pttl(other) == -1
    admin.close()


@pytest.mark.redis
def test_a_unique_put_whose_reply_was_lost_is_sent_again(
    redis_url: str, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connection whose first UNIQUE call runs but loses its reply
    queue = make_queue(put_timeout_s=5.0)
    run_all = queue._unique.run_all
    lost: list[object] = []

    def flaky(what: str, calls: list[object], *rest: object) -> list[object]:
        replies = run_all(what, calls, *rest)  # type: ignore[arg-type]
        if not lost:
            lost.append(replies)
            raise BackendUnavailableError("connection reset while reading the reply")
        return replies

    monkeypatch.setattr(queue._unique, "run_all", flaky)
    # When it puts a unique job / Then the retry finds the job the lost call stored: one job
    assert queue.put_unique("q", "j1", b"{}", key="k", ttl_s=None) == "j1"
    assert lost and queue.counts("q").waiting == 1


@pytest.mark.redis
def test_the_asyncio_backend_puts_unique_jobs_like_the_blocking_one(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async def race() -> list[str]:
        # Given the asyncio backend, When ten unique puts of one key run at once
        backend = open_async_queue(redis_url, QueueSettings())
        try:
            puts = [backend.put_unique("q", f"j{n}", b"{}", key="k", ttl_s=None) for n in range(10)]
            return list(await asyncio.gather(*puts))
        finally:
            await backend.aclose()

    holders = asyncio.run(race())
    # Then one job is stored and every put names it, as the blocking backend sees it too
    assert len(set(holders)) == 1
    queue = make_queue()
    assert queue.counts("q").waiting == 1
    assert queue.put_unique("q", "late", b"{}", key="k", ttl_s=None) == holders[0]


@pytest.mark.redis
def test_conveyor_enqueue_with_a_unique_key_prints_the_holders_id(
    redis_url: str, make_queue: MakeQueue
) -> None:
    def enqueue(*args: str) -> str:
        command = [sys.executable, "-m", "consumer", "enqueue", "echo", *args, "--url", redis_url]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = enqueue("1", "--unique-key", "k")
    assert enqueue("2", "--unique-key", "k", "--delay", "5") == first
    assert enqueue("3", "--unique-key", "other") != first
    assert make_queue().counts("default").waiting == 2
