"""``Producer`` on the in-process memory queue, and how feeds are shared between producers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from producer.feeds import feed_share, load_feed
from producer.producer import JobCall, Producer
from services.backends import open_queue
from services.codec import decode_job, encode_value
from services.errors import (
    BackendUnavailableError,
    ConfigError,
    EncodeError,
    JobArgumentsError,
    JobNotFinishedError,
    QueueFullError,
    UnknownJobError,
)
from services.job import Job
from services.names import InvalidNameError
from services.protocol import Backend, Completion, Delivery, JobPutter, JobStatus, QueueCounts
from services.registry import Registry
from services.settings import QueueSettings

registry = Registry()


@registry.job
def add(a: int, b: int) -> int:
    return a + b


@registry.job
def echo(*args: Any, **kwargs: Any) -> Any:
    return [list(args), kwargs]


@pytest.fixture
def queue() -> Iterator[Backend]:
    backend = open_queue("memory://")
    yield backend
    backend.close()


def take_all(queue: Backend, name: str = "default") -> list[Delivery]:
    return queue.get([name], max_count=10, timeout_s=0)


def poll_get(queue: Backend, timeout_s: float) -> list[Delivery]:
    """Fetch with short waits until something arrives or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = queue.get(["default"], max_count=10, timeout_s=0.01)
        if found:
            return found
    return []


# -- enqueue ----------------------------------------------------------------------------------
def test_enqueue_puts_the_encoded_job_on_the_queue(queue: Backend) -> None:
    # Given a producer with a registry
    producer = Producer(queue, registry=registry)

    # When a job is enqueued
    job = producer.enqueue("add", 2, b=3)

    # Then its encoded body is on the queue, and decodes to the job returned
    [delivery] = take_all(queue)
    assert delivery.job_id == job.id
    assert decode_job(delivery.body) == job
    assert (job.name, job.args, dict(job.kwargs), job.queue) == ("add", (2,), {"b": 3}, "default")


def test_enqueue_on_a_named_queue(queue: Backend) -> None:
    producer = Producer(queue, name="images")
    job = producer.enqueue("resize", "a.jpg")
    assert take_all(queue) == []
    [delivery] = take_all(queue, "images")
    assert decode_job(delivery.body) == job and job.queue == "images"


def test_without_a_registry_any_name_is_enqueued(queue: Backend) -> None:
    job = Producer(queue).enqueue("not.registered.anywhere", 1)
    assert [d.job_id for d in take_all(queue)] == [job.id]


def test_each_enqueue_gets_a_fresh_id(queue: Backend) -> None:
    producer = Producer(queue, registry=registry)
    ids = {producer.enqueue("add", n, n).id for n in range(20)}
    assert len(ids) == 20
    assert queue.depth("default") == 20


def test_unknown_job_is_rejected_at_enqueue(queue: Backend) -> None:
    # Given a producer with a registry
    producer = Producer(queue, registry=registry)

    # When an unregistered job is enqueued / Then it is rejected and nothing is enqueued
    with pytest.raises(UnknownJobError, match="unknown job 'nope'"):
        producer.enqueue("nope", 1)
    assert queue.depth("default") == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "detail"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"c": 3}, "unexpected keyword argument 'c'"),
    ],
)
def test_wrong_arguments_are_rejected_at_enqueue(
    queue: Backend, args: tuple[Any, ...], kwargs: dict[str, Any], detail: str
) -> None:
    producer = Producer(queue, registry=registry)
    with pytest.raises(JobArgumentsError, match=rf"job 'add': .*{detail}"):
        producer.enqueue("add", *args, **kwargs)
    assert queue.depth("default") == 0


@pytest.mark.parametrize(
    "bad", [{1, 2}, object(), float("nan"), b"bytes"], ids=["set", "object", "nan", "bytes"]
)
def test_unencodable_argument_fails_synchronously(queue: Backend, bad: Any) -> None:
    # Given a producer / When an argument is not JSON
    producer = Producer(queue, registry=registry)
    with pytest.raises(EncodeError, match="arguments of job 'echo' is not JSON-serialisable"):
        producer.enqueue("echo", "fine", bad)
    with pytest.raises(EncodeError):
        producer.enqueue("echo", key=bad)

    # Then nothing reached the queue, not even later
    assert queue.depth("default") == 0
    assert take_all(queue) == []


def test_enqueue_many_puts_every_call(queue: Backend) -> None:
    # Given a producer / When a batch is enqueued
    producer = Producer(queue, registry=registry)
    jobs = producer.enqueue_many(
        [("add", [1, 2], {}), ("echo", (), {"x": 1}), ("add", [3], {"b": 4})]
    )

    # Then all are on the queue, in order
    assert [decode_job(d.body) for d in take_all(queue)] == jobs
    assert [job.name for job in jobs] == ["add", "echo", "add"]


def test_enqueue_many_of_nothing(queue: Backend) -> None:
    assert Producer(queue).enqueue_many([]) == []
    assert queue.depth("default") == 0


@pytest.mark.parametrize(
    ("bad_call", "error"),
    [
        (("nope", [], {}), UnknownJobError),
        (("add", [1], {}), JobArgumentsError),
        (("echo", [{1, 2}], {}), EncodeError),
        (("echo", [], {"when": object()}), EncodeError),
    ],
    ids=["unknown", "arguments", "set", "object"],
)
def test_enqueue_many_is_all_or_nothing(
    queue: Backend, bad_call: tuple[str, list[Any], dict[str, Any]], error: type[Exception]
) -> None:
    # Given a batch whose last call is bad
    producer = Producer(queue, registry=registry)
    calls: list[JobCall] = [("add", [1, 2], {}), ("echo", ["ok"], {}), bad_call]

    # When it is enqueued / Then it fails and none of the good calls was enqueued
    with pytest.raises(error):
        producer.enqueue_many(calls)
    assert queue.depth("default") == 0


# -- delays -----------------------------------------------------------------------------------
def test_enqueue_in_is_invisible_until_due(queue: Backend) -> None:
    # Given a job enqueued with a delay
    producer = Producer(queue, registry=registry)
    started = time.monotonic()
    job = producer.enqueue_in(0.3, "add", 1, 2)

    # When consumers look right away / Then it is not there
    assert take_all(queue) == []
    assert queue.depth("default") == 0
    status = queue.status(job.id)
    assert status is not None and status.status == "scheduled"

    # When they keep looking / Then it arrives, not before the delay
    found = poll_get(queue, timeout_s=10.0)
    waited = time.monotonic() - started
    assert [d.job_id for d in found] == [job.id]
    assert waited >= 0.3


def test_enqueue_in_with_a_negative_delay_is_immediate(queue: Backend) -> None:
    job = Producer(queue).enqueue_in(-5, "x")
    assert [d.job_id for d in take_all(queue)] == [job.id]


@pytest.mark.parametrize(
    "make_when",
    [
        lambda: datetime.now(UTC) + timedelta(seconds=0.3),
        lambda: datetime.now(timezone(timedelta(hours=-7))) + timedelta(seconds=0.3),
        lambda: datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=0.3),
    ],
    ids=["utc", "other-zone", "naive-means-utc"],
)
def test_enqueue_at_a_future_time(queue: Backend, make_when: Callable[[], datetime]) -> None:
    # Given a job enqueued for 0.3 s from now
    started = time.monotonic()
    job = Producer(queue).enqueue_at(make_when(), "x")

    # Then it is invisible at first, and arrives after about 0.3 s (not hours: zones are right)
    assert take_all(queue) == []
    found = poll_get(queue, timeout_s=10.0)
    assert [d.job_id for d in found] == [job.id]
    assert 0.2 <= time.monotonic() - started < 10.0


def test_enqueue_at_a_past_time_is_immediate(queue: Backend) -> None:
    job = Producer(queue).enqueue_at(datetime.now(UTC) - timedelta(hours=1), "x")
    assert [d.job_id for d in take_all(queue)] == [job.id]


# -- results ----------------------------------------------------------------------------------
def test_result_after_an_ack_with_a_result(queue: Backend) -> None:
    # Given an enqueued job, taken and acked by a consumer with its return value
    producer = Producer(queue, registry=registry)
    job = producer.enqueue("add", 20, 22)
    [delivery] = take_all(queue)
    assert queue.ack([Completion(delivery, encode_value(job.args[0] + job.args[1]))]) == 0

    # When the producer asks for the result / Then it gets the decoded value
    assert producer.result(job.id, timeout=5.0) == 42
    status = producer.status(job.id)
    assert status is not None and status.status == "done"


def test_result_waits_for_a_later_ack(queue: Backend) -> None:
    # Given a consumer that acks the job from another thread, a little later
    producer = Producer(queue, registry=registry)
    job = producer.enqueue("echo", "hi")

    def consume() -> None:
        [delivery] = poll_get(queue, timeout_s=10.0)
        queue.ack([Completion(delivery, encode_value([["hi"], {}]))])

    consumer = threading.Thread(target=consume)
    consumer.start()

    # When the producer waits / Then it is woken by the ack
    assert producer.result(job.id, timeout=10.0) == [["hi"], {}]
    consumer.join(10)


def test_result_of_a_job_acked_without_a_result_is_none(queue: Backend) -> None:
    producer = Producer(queue)
    job = producer.enqueue("x")
    queue.ack([Completion(take_all(queue)[0])])
    assert producer.result(job.id, timeout=1.0) is None


def test_result_timeout(queue: Backend) -> None:
    # Given a job nobody runs
    producer = Producer(queue, registry=registry)
    job = producer.enqueue("add", 1, 2)

    # When its result is awaited briefly / Then JobNotFinishedError, promptly
    started = time.monotonic()
    with pytest.raises(JobNotFinishedError, match=rf"job {job.id} did not finish within 0.2 s"):
        producer.result(job.id, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 5.0


def test_result_of_a_dead_lettered_job(queue: Backend) -> None:
    # Given a job a consumer gave up on
    producer = Producer(queue)
    job = producer.enqueue("x")
    assert queue.dead_letter(take_all(queue)[0], "ValueError: nope")

    # When its result is asked for / Then the error says it is dead and why
    with pytest.raises(JobNotFinishedError, match=rf"job {job.id} is dead: ValueError: nope"):
        producer.result(job.id, timeout=1.0)


# -- bounded queues ---------------------------------------------------------------------------
@pytest.fixture
def bounded() -> Iterator[Backend]:
    backend = open_queue("memory://", QueueSettings(max_depth=2, put_timeout_s=0.2))
    yield backend
    backend.close()


def test_full_queue_raises_and_enqueues_nothing(bounded: Backend) -> None:
    # Given a bounded queue holding its two jobs
    producer = Producer(bounded, registry=registry)
    producer.enqueue("add", 1, 2)
    producer.enqueue("add", 3, 4)

    # When a third is enqueued / Then it waits put_timeout_s, raises, and is not stored
    started = time.monotonic()
    with pytest.raises(QueueFullError, match="queue 'default' is full"):
        producer.enqueue("add", 5, 6)
    assert time.monotonic() - started >= 0.2
    assert bounded.depth("default") == 2


def test_full_queue_refuses_a_whole_batch(bounded: Backend) -> None:
    producer = Producer(bounded, registry=registry)
    with pytest.raises(QueueFullError):
        producer.enqueue_many([("add", [n, n], {}) for n in range(3)])
    assert bounded.depth("default") == 0


def test_bounded_queue_takes_the_job_once_there_is_room() -> None:
    # Given a full bounded queue with a generous put timeout
    backend = open_queue("memory://", QueueSettings(max_depth=1, put_timeout_s=30.0))
    producer = Producer(backend)
    producer.enqueue("first")
    outcome: list[Any] = []
    blocked = threading.Thread(target=lambda: outcome.append(producer.enqueue("second")))
    blocked.start()

    # When a consumer takes a job
    taken = take_all(backend)

    # Then the waiting enqueue completes, well before its timeout
    blocked.join(10)
    assert not blocked.is_alive()
    assert [decode_job(d.body).name for d in taken] == ["first"]
    assert [job.name for job in outcome] == ["second"]
    assert backend.depth("default") == 1
    backend.close()


# -- feeds ------------------------------------------------------------------------------------
def plain_feed(count: int = 10) -> Iterator[tuple[str, list[Any], dict[str, Any]]]:
    for number in range(count):
        yield "add", [number, 1], {}


calls_to_sharding_feed: list[tuple[int, int]] = []


def sharding_feed(
    count: int = 10, *, producer_index: int, producer_count: int
) -> Iterator[tuple[str, list[Any], dict[str, Any]]]:
    calls_to_sharding_feed.append((producer_index, producer_count))
    for number in range(producer_index, count, producer_count):
        yield "add", [number, 1], {}


def everything(feed: Callable[..., Any], count: int, options: dict[str, Any]) -> list[int]:
    """The first argument of every call that ``count`` producers make, concatenated."""
    numbers = []
    for index in range(count):
        numbers += [
            args[0] for _, args, _ in feed_share(feed, index=index, count=count, options=options)
        ]
    return numbers


@pytest.mark.parametrize("producers", [1, 2, 3, 4, 7, 30])
@pytest.mark.parametrize("feed", [plain_feed, sharding_feed], ids=["plain", "self-sharding"])
def test_feed_shares_cover_the_feed_exactly_once(feed: Callable[..., Any], producers: int) -> None:
    # Given a feed of 25 calls, run by N producers
    # When each producer takes its share
    numbers = everything(feed, producers, {"count": 25})

    # Then together they make every call, none twice
    assert sorted(numbers) == list(range(25))
    assert len(numbers) == len(set(numbers))


def test_self_sharding_feed_is_told_its_index() -> None:
    calls_to_sharding_feed.clear()
    shares = [list(feed_share(sharding_feed, index=i, count=3, options={})) for i in range(3)]
    assert calls_to_sharding_feed == [(0, 3), (1, 3), (2, 3)]
    assert [[args[0] for _, args, _ in share] for share in shares] == [
        [0, 3, 6, 9],
        [1, 4, 7],
        [2, 5, 8],
    ]


def test_plain_feed_is_strided() -> None:
    share = feed_share(plain_feed, index=1, count=3, options={"count": 8})
    assert [args[0] for _, args, _ in share] == [1, 4, 7]


def test_feed_items_are_normalised() -> None:
    def feed() -> Iterator[Any]:
        yield ["add", (1, 2), {}]

    assert list(feed_share(feed, index=0, count=1, options={})) == [("add", (1, 2), {})]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("add", r"feed item 0 is 'add', not \(job_name, args, kwargs\)"),
        (("add", [1]), r"feed item 0 is \('add', \[1\]\), not \(job_name, args, kwargs\)"),
        (("add", [1], {}, 4), r"not \(job_name, args, kwargs\)"),
        ((7, [1], {}), r"feed item 0: expected \(str, list, dict\)"),
        (("add", "12", {}), r"feed item 0: expected \(str, list, dict\)"),
        (("add", 12, {}), r"feed item 0: expected \(str, list, dict\)"),
        (("add", [1], [("b", 2)]), r"feed item 0: kwargs must be a dict"),
        (None, r"feed item 0 is None"),
    ],
)
def test_bad_feed_items(item: Any, message: str) -> None:
    # Given a feed that yields a bad item
    def feed() -> Iterator[Any]:
        yield item

    # When its share is consumed / Then ConfigError says what is wrong
    with pytest.raises(ConfigError, match=message):
        list(feed_share(feed, index=0, count=1, options={}))


def test_bad_item_after_good_ones_is_found_when_reached() -> None:
    def feed() -> Iterator[Any]:
        yield "add", [1, 2], {}
        yield "broken"

    share = feed_share(feed, index=0, count=1, options={})
    assert next(share) == ("add", (1, 2), {})
    with pytest.raises(ConfigError, match="feed item 1"):
        next(share)


def test_load_feed() -> None:
    from services import demo

    assert load_feed("services.demo:feed") is demo.feed
    with pytest.raises(ConfigError, match=r"--feed 'services.demo:registry' is a Registry"):
        load_feed("services.demo:registry")
    with pytest.raises(ConfigError, match="must look like"):
        load_feed("services.demo.feed")


def test_jobs_built_by_the_producer_are_plain_records(queue: Backend) -> None:
    # The Job a producer returns is the frozen record that crossed the queue
    job = Producer(queue).enqueue("x", 1)
    assert isinstance(job, Job)
    with pytest.raises(AttributeError):
        job.name = "y"  # type: ignore[misc]


# -- caller-chosen ids: put if absent ---------------------------------------------------------
@pytest.fixture(params=["memory", "redis"])
def any_queue(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The in-process memory queue, or a Redis queue on the suite's real redis-server."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    backend = open_queue(url, QueueSettings(result_ttl_s=60))
    yield backend
    backend.close()


def test_enqueue_with_a_job_id_uses_it(any_queue: Backend) -> None:
    job = Producer(any_queue, registry=registry).enqueue("add", 1, 2, job_id="order-17")
    [delivery] = poll_get(any_queue, 2.0)
    assert job.id == delivery.job_id == "order-17"
    assert decode_job(delivery.body) == job


def test_enqueue_of_a_present_id_stores_nothing_and_returns_that_id(any_queue: Backend) -> None:
    # Given a job enqueued with a caller-chosen id
    producer = Producer(any_queue, registry=registry)
    first = producer.enqueue("add", 1, 2, job_id="order-17")

    # When the same id is enqueued again, with other arguments, now and delayed
    again = producer.enqueue("add", 3, 4, job_id="order-17")
    later = producer.enqueue_in(60, "add", 5, 6, job_id="order-17")

    # Then the returned jobs carry the id (and the caller's arguments), but only the first
    # job is stored: once, with its own arguments
    assert (again.id, again.args, later.id) == ("order-17", (3, 4), "order-17")
    assert any_queue.counts("default").unsettled == 1
    [delivery] = poll_get(any_queue, 2.0)
    assert decode_job(delivery.body) == first


def test_enqueue_of_a_finished_id_stores_nothing(any_queue: Backend) -> None:
    # Given a job that ran to completion
    producer = Producer(any_queue)
    producer.enqueue("echo", job_id="once")
    [delivery] = poll_get(any_queue, 2.0)
    any_queue.ack([Completion(delivery, encode_value("first"))])

    # When it is enqueued again within the result TTL / Then it does not run again
    producer.enqueue("echo", job_id="once")
    assert any_queue.get(["default"], timeout_s=0.2) == []
    assert producer.result("once", timeout=1.0) == "first"


def test_enqueue_many_with_ids(any_queue: Backend) -> None:
    # Given one id already enqueued
    producer = Producer(any_queue, registry=registry)
    producer.enqueue("add", 0, 0, job_id="a")

    # When a batch mixes calls with and without ids, one of them present, one repeated
    jobs = producer.enqueue_many(
        [
            ("add", [1, 1], {}, "a"),
            ("add", [2, 2], {}, "b"),
            ("add", [3, 3], {}),
            ("add", [4, 4], {}, None),
            ("add", [5, 5], {}, "b"),
        ]
    )

    # Then every call has a job with its id, and each id is stored once
    assert [job.id for job in jobs][:2] == ["a", "b"]
    assert jobs[4].id == "b"
    assert len({job.id for job in jobs}) == 4
    found = [decode_job(d.body) for d in any_queue.get(["default"], max_count=10, timeout_s=1)]
    assert [(job.id, job.args) for job in found] == [
        ("a", (0, 0)),
        ("b", (2, 2)),
        (jobs[2].id, (3, 3)),
        (jobs[3].id, (4, 4)),
    ]


class _LostReply:
    """A ``JobPutter`` whose puts are stored, but whose first put reply is lost on the way back."""

    def __init__(self, inner: JobPutter) -> None:
        self._inner = inner
        self.lost = 0

    def put(
        self, queue: str, job_id: str, body: bytes, *, delay_s: float = 0.0, new_ids: bool = False
    ) -> bool:
        stored = self._inner.put(queue, job_id, body, delay_s=delay_s, new_ids=new_ids)
        if self.lost == 0:
            self.lost += 1
            raise BackendUnavailableError("connection reset while reading the reply")
        return stored

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        return self._inner.put_many(queue, items, delay_s=delay_s, new_ids=new_ids)

    def put_unique(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        key: str,
        ttl_s: float | None,
        delay_s: float = 0.0,
    ) -> str:
        return self._inner.put_unique(queue, job_id, body, key=key, ttl_s=ttl_s, delay_s=delay_s)

    def status(self, job_id: str) -> JobStatus | None:
        return self._inner.status(job_id)

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        return self._inner.wait_finished(job_id, timeout_s)

    def close(self) -> None:
        self._inner.close()


def test_an_enqueue_whose_reply_was_lost_is_repeated_safely(any_queue: Backend) -> None:
    # Given a backend that stores a put but loses its reply
    flaky = _LostReply(any_queue)
    producer = Producer(flaky)

    # When the enqueue fails as not confirmed, and the caller enqueues again with the id
    with pytest.raises(BackendUnavailableError) as failed:
        producer.enqueue("echo", "x")
    [note] = failed.value.__notes__
    job_id = note.split()[2].rstrip(":")
    again = producer.enqueue("echo", "x", job_id=job_id)

    # Then the job is stored once and runs once
    assert again.id == job_id
    assert any_queue.counts("default").waiting == 1
    assert [d.job_id for d in poll_get(any_queue, 2.0)] == [job_id]
    assert any_queue.get(["default"], timeout_s=0.2) == []


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "has space", "-leading", "a/b", "x" * 129, "é", 17], ids=repr)
def test_an_invalid_job_id_is_rejected_before_anything_is_sent(queue: Backend, bad: Any) -> None:
    producer = Producer(queue, registry=registry)
    with pytest.raises(InvalidNameError, match="job id"):
        producer.enqueue("add", 1, 2, job_id=bad)
    with pytest.raises(InvalidNameError, match="job id"):
        producer.enqueue_many([("add", [1, 2], {}), ("add", [1, 2], {}, bad)])
    assert queue.counts("default") == QueueCounts()


def test_an_invalid_queue_name_is_rejected_at_construction(queue: Backend) -> None:
    with pytest.raises(InvalidNameError, match=r"invalid queue name 'bad name': use 1 to 128"):
        Producer(queue, name="bad name")
    assert issubclass(InvalidNameError, ConfigError)


def test_valid_names_are_accepted(queue: Backend) -> None:
    producer = Producer(queue, name="images:v2.thumbs-1_a")
    job = producer.enqueue("resize", job_id="user:42.avatar-v1_b")
    assert [d.job_id for d in take_all(queue, "images:v2.thumbs-1_a")] == [job.id]
