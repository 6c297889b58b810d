"""What only the Redis backend shows of unique jobs: the UNIQUE script's declared keys, the
key it stores (a digest under the queue's tag, with ``PX`` for ``unique_for``), and a put whose
reply was lost being sent again safely."""

from __future__ import annotations

import re

import pytest
import redis

from services.backends.redis import keys
from services.backends.redis import scripts as lua
from services.backends.redis.unique import UNIQUE_BODY, UNIQUE_KEYS
from services.errors import BackendUnavailableError
from services.unique_keys import key_digest
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
