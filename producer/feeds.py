"""Feeds: user generators that yield ``(job_name, args, kwargs)`` for producers to enqueue.

A feed is named ``module:function`` (``--feed``). With ``--producers N`` each producer runs the
feed for its share: a feed that accepts ``producer_index`` and ``producer_count`` keyword
arguments shards itself; any other feed is run by every producer and each keeps every N-th item,
so no job is produced twice.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from producer.producer import JobCall
from services.errors import ConfigError
from services.loading import load_object

DEMO_FEED = "services.demo:feed"


def load_feed(path: str) -> Callable[..., Any]:
    """The feed function at ``path``; raises ``ConfigError`` if it is not callable."""
    feed = load_object(path, what="--feed")
    if not callable(feed):
        raise ConfigError(f"--feed {path!r} is a {type(feed).__name__}, not a function")
    return feed  # type: ignore[no-any-return]


def feed_share(
    feed: Callable[..., Any], *, index: int, count: int, options: Mapping[str, Any]
) -> Iterator[JobCall]:
    """The calls producer ``index`` of ``count`` enqueues, each checked for shape."""
    params = inspect.signature(feed).parameters
    if "producer_index" in params and "producer_count" in params:
        items = feed(producer_index=index, producer_count=count, **options)
        stride = 1
    else:
        items = feed(**options)
        stride = count
    shard = itertools.islice(items, index if stride > 1 else 0, None, stride)
    for position, item in enumerate(shard):
        yield _checked(item, position)


def _checked(item: Any, position: int) -> JobCall:
    if not (isinstance(item, tuple | list) and len(item) == 3):
        raise ConfigError(f"feed item {position} is {item!r}, not (job_name, args, kwargs)")
    name, args, kwargs = item
    if not isinstance(name, str) or not isinstance(args, Sequence) or isinstance(args, str):
        raise ConfigError(f"feed item {position}: expected (str, list, dict), got {item!r}")
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"feed item {position}: kwargs must be a dict, got {kwargs!r}")
    return name, tuple(args), dict(kwargs)
