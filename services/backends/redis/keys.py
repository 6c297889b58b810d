"""Key names and byte layouts of the Redis backend (the Lua in ``scripts`` mirrors them).

**One hash tag per queue.** Every key of a queue starts with its *tag* ``T = cv:{<queue>}:``
(``tag``; queue names never hold braces, ``services.names``), so Redis Cluster keeps all of a
queue's keys in one slot and a script of that queue can touch any of them. Every key starts
with ``cv:``, so an ACL can be limited to ``~cv:*``:

=====================  ======  ==============================================================
key                    type    content
=====================  ======  ==============================================================
``T q``                list    waiting jobs, FIFO: each an *element* (header + body)
``T d``                zset    delayed jobs: ``<seq>:<element>`` scored by due time (ms)
``T b``                list    the queue's doorbell (at most one item) that idle consumers
                               BLPOP; rung by every push
``T w:<3 hex>``        hash    *waiting markers* of the queue's jobs queued or delayed (below)
``T n``                hash    counters: ``inflight`` now, ``done`` and ``dead`` in total;
                               ``xq``/``xd``: cancelled jobs still in ``T q``/``T d``;
                               ``fenced`` (late settlements rejected), ``recovered``,
                               ``quarantined`` (``stats`` sums these over the queues)
``T x``                hash    *tombstones*: id key -> ``q``/``d`` of cancelled jobs still in
                               ``T q``/``T d``; FETCH drops those instead of delivering them
``T ab``               hash    abort requests: id key -> its marker's bucket and field, of
                               running jobs asked to stop (``aborts``: ABORT, ABORTED)
``T r``                list    ``<time>:<done>`` samples of the done counter, newest first (90
                               kept, 1 day TTL), taken by status reads for ``done_rate``
``T dl``               zset    dead letters: ``<seq>\\n<len>\\n<reason><element>`` by time (ms)
``T i:<consumer>``     hash    the consumer's in-flight jobs of this queue: token -> element
``T p:<consumer>``     set     its tokens here held but not running (prefetched), per beat
``T h:<consumer>``     set     tokens taken from it here by reclaim or lease recovery (1 day
                               TTL): a late settlement of one of these is *fenced*, of any
                               other token a repeat of one that already worked
``T l``                zset    leases: consumer id scored by its lease expiry (ms, Redis clock)
``T running``          hash    job id key -> consumer id, for ``status`` (in-flight jobs only)
``T j:<job id>``       list    terminal status record (done/dead) + result; TTL ``result_ttl_s``
``T f:<job id>``       string  status record of a job waiting for its retry; TTL likewise
``T seq``              string  counter for delivery tokens and unique delayed members
``T u:<digest>``       string  a unique key (``unique``): the id of the job holding it (length
                               byte + id, as in an element); ``PX`` for ``unique_for``
``T e``                string  the queue's random *epoch*, set once (``SET NX``): a value that
                               changed or vanished means Redis lost the queue's data
``cv:{cv}:queues``     set     the registry: every queue put on or served (``queues``)
``cv:{cv}:e``          string  the registry's epoch, watched like a queue's (``health``)
=====================  ======  ==============================================================

The fleet's keys are under their own tag, ``cv:{fleet}:`` (``fleet``). No script mixes tags:
each script handles one queue, declares that queue's fixed keys in ``KEYS`` and builds the
rest from ``T`` (``scripts``); the registry is written by the client outside any script.

**Finding a job from its id** (``status``, ``wait_finished``, ``cancel``): there is no index
from ids to queues; the client reads the registry and pipelines the per-queue reads (four a
queue, one round trip per node), and the first queue in sorted order that knows the id
answers. Why: nothing is added to the put/fetch hot path, and there is no second record per
job that could disagree with its queue after a crash or a failover; a status read costs a read
per queue, cheap for the tens of queues deployments have. The price: put-if-absent and job ids
are per queue, so a caller-chosen id is unique within its queue, not across queues
(generated ids are random, hence unique anyway).

**The layout before 0.2** (``cv:q:<queue>``, global ``cv:leases``, ``cv:seq``, ``cv:queues``,
``cv:marker``: no hash tags) is refused, not migrated: a connection's first use finds any of
``OLD_LAYOUT_KEYS`` and raises ``ConfigError`` (the worker exits 2), telling to finish those
jobs with the previous version (``conveyor worker --burst``) or delete the old keys. There is
no migrate command.

An *element* is ``[redeliveries: 1 byte][id length: 1 byte][id][body]``; an id of 32 lowercase
hex digits (``new_job_id``) is stored as 16 raw bytes with length byte 0, which keeps a queued
job's overhead at 18 bytes over its body. Elements that break this shape (written by someone
else) are dead-lettered by the script that meets them, with the reason, never delivered. A
*status record* is ``<state>\\n<attempts>\\n<len>\\n<error><0 | 1 + result>``.

**Waiting markers** make put-if-absent and ``status`` of a waiting job possible at ~12 bytes a
job. A job's *fingerprint* is 8 bytes: the first 8 bytes of a hex id (random already), else of
the SHA-1 of the id. Its first 3 hex digits pick one of its queue's 4,096 hashes ``T w:<3 hex
digits>``; the field is fingerprint bytes 2-8 (byte 1 is implied by the bucket, so all 64 bits
count) and the value ``1`` queued or ``2`` scheduled (delayed): the key names the queue.
PUT/NACK/RETRY/HAND_BACK/REQUEUE_DEAD and FETCH (a delayed job come due) set a marker with
``HSET``, FETCH and CANCEL delete it with ``HDEL``.

Redis replicates a script's *effects*, so a marker change reaches the AOF and the replicas as
that one ~40-byte command. Two different ids of one queue clash only if their 64-bit
fingerprints agree: about n / 2^64 per put with n jobs waiting (5e-14 for a million); the
second put is then answered "present" and not stored.

Why this shape (measured on Redis 7.0, 1,000,000 waiting jobs, ``used_memory``): a key per job
costs ~65 bytes a job; hashes in 16,384 buckets with the whole 8-byte fingerprint as field and a
letter as value ~15.4; 7-byte fields ~14.3; in 4,096 buckets ~13.4; with an integer value
(2 bytes in a listpack, a letter takes 3) ~12.4, which keeps a queued job with a 207-byte body
at 248 bytes in all (``scripts/bench_worker.py --only memory``). String buckets (10-byte
records found by substring search) cost ~11 bytes, but every change rewrote the whole bucket
with ``SET``: ~2.4 KB of AOF and replication per change at a million waiting jobs. AOF bytes
per job (``scripts/bench_aof.py --jobs 100000 --backlog 1000000``, body 206 bytes): string
buckets 2,777 to enqueue and 3,146 to drain; these hashes 294 and 620, the same as with no
backlog (bare ``RPUSH``: 214). A hash stays a compact *listpack* up to
``hash-max-listpack-entries`` fields (default 512): 4,096 buckets hold ~244 each at a million
waiting jobs of one queue and reach 512 near two million. Past that a bucket converts to a
hashtable: still correct, but ~69 bytes a marker instead of ~12 (raise
``hash-max-listpack-entries``, e.g. to 2048 for eight million). Buckets are per queue, so a
queue with few waiting jobs has few small buckets.

**Cancelling** cannot take the job out of its list or sorted set (that would mean finding its
element, a scan): CANCEL deletes the marker, records the terminal status (dead, "cancelled"),
counts it dead and leaves a *tombstone* in ``T x``, counted in ``xq``/``xd``, which ``counts``
subtracts from the list's and the set's lengths. FETCH, meeting a tombstoned job (as it comes
due, or at the head of the list), drops it and its tombstone.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from services.errors import EncodeError

PREFIX = "cv:"
MAX_REASON_CHARS = 8192
"""Reasons and tracebacks kept in dead letters and status records are cut to this size."""

REGISTRY_KEY = f"{PREFIX}{{cv}}:queues"
REGISTRY_EPOCH_KEY = f"{PREFIX}{{cv}}:e"
OLD_LAYOUT_KEYS = (f"{PREFIX}marker", f"{PREFIX}queues", f"{PREFIX}leases", f"{PREFIX}seq")
"""Global keys of the layout before 0.2; any of them present means old data (refused)."""

_HEX_ID = re.compile(r"[0-9a-f]{32}")


def tag(queue: str) -> str:
    """``cv:{<queue>}:``, the start of every key of ``queue`` (one Redis Cluster slot)."""
    return f"{PREFIX}{{{queue}}}:"


@dataclass(frozen=True)
class QueueKeys:
    """The fixed keys of one queue (see the table above); ``of(queue)`` caches them."""

    tag: str
    waiting: str
    delayed: str
    bell: str
    counts: str
    cancelled: str
    rate: str
    dead: str
    leases: str
    running: str
    seq: str
    epoch: str


@functools.lru_cache(maxsize=4096)
def of(queue: str) -> QueueKeys:
    """The fixed keys of ``queue``, built once (they are on every hot path)."""
    t = tag(queue)
    return QueueKeys(
        t, f"{t}q", f"{t}d", f"{t}b", f"{t}n", f"{t}x", f"{t}r", f"{t}dl", f"{t}l",
        f"{t}running", f"{t}seq", f"{t}e",
    )  # fmt: skip


@functools.lru_cache(maxsize=8192)
def declared(queue: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The keys named by ``fields`` of ``QueueKeys`` for ``queue``: a script's ``KEYS``."""
    found = of(queue)
    return tuple(getattr(found, name) for name in fields)


def inflight_key(queue: str, consumer_id: str) -> str:
    """The hash of ``consumer_id``'s in-flight jobs of ``queue``, by fencing token."""
    return f"{tag(queue)}i:{consumer_id}"


def prefetched_key(queue: str, consumer_id: str) -> str:
    """The set of ``consumer_id``'s tokens of ``queue`` held but not running."""
    return f"{tag(queue)}p:{consumer_id}"


def done_key(queue: str, job_id: str) -> str:
    """The terminal status record of ``job_id`` (a one-item list, so waiters can block on it)."""
    return f"{tag(queue)}j:{job_id}"


def failed_key(queue: str, job_id: str) -> str:
    """The status record of ``job_id`` while it waits for its next attempt."""
    return f"{tag(queue)}f:{job_id}"


MARKS = {b"1": "queued", b"2": "scheduled"}
"""Values of a waiting marker (integers: a listpack stores them in 2 bytes, a letter in 3)."""


def marker_state(value: bytes | str | None) -> str | None:
    """``"queued"``, ``"scheduled"`` or None: the state a marker's value (``HGET``) records."""
    return MARKS.get(value.encode() if isinstance(value, str) else value or b"")


def fingerprint(job_id: str) -> tuple[str, bytes]:
    """``job_id``'s marker bucket (3 hex digits) and field (fingerprint bytes 2-8)."""
    sign = job_id if _HEX_ID.fullmatch(job_id) else _sha1(id_key(job_id)).hex()
    return sign[:3], bytes.fromhex(sign[2:16])


def marker_at(queue: str, job_id: str) -> tuple[str, bytes]:
    """The bucket key of ``job_id``'s waiting marker in ``queue`` and its field."""
    bucket, field = fingerprint(job_id)
    return f"{tag(queue)}w:{bucket}", field


def _sha1(data: bytes) -> bytes:
    # A spreading function, not a security one (ids are the caller's own).
    return hashlib.sha1(data, usedforsecurity=False).digest()


def id_key(job_id: str) -> bytes:
    """The bytes that stand for ``job_id`` inside an element and in ``T running``."""
    if _HEX_ID.fullmatch(job_id):
        return bytes.fromhex(job_id)
    raw = job_id.encode()
    if not 1 <= len(raw) <= 255:
        raise EncodeError(f"job id must be 1 to 255 bytes of UTF-8, not {len(raw)}")
    return raw


def pack_element(job_id: str, body: bytes, redeliveries: int = 0) -> bytes:
    """The bytes stored in a queue for one job."""
    if _HEX_ID.fullmatch(job_id):
        return bytes((min(redeliveries, 255), 0)) + bytes.fromhex(job_id) + body
    key = id_key(job_id)
    return bytes((min(redeliveries, 255), len(key))) + key + body


@dataclass(frozen=True)
class Element:
    """An element taken apart."""

    job_id: str
    body: bytes
    redeliveries: int


def unpack_element(element: bytes) -> Element:
    """Split an element made by ``pack_element`` (or rewritten by the Lua scripts).

    Never raises: a malformed element (the scripts dead-letter those, never deliver them)
    comes back whole as the body of an empty id, and an id that is not UTF-8 is decoded with
    backslash escapes, so whoever holds it can still settle it by its receipt.
    """
    if len(element) < 2:
        return Element("", element, 0)
    length = element[1]
    if length == 0:
        if len(element) < 18:
            return Element("", element, 0)
        return Element(element[2:18].hex(), element[18:], element[0])
    if len(element) < 2 + length:
        return Element("", element, 0)
    job_id = element[2 : 2 + length].decode(errors="backslashreplace")
    return Element(job_id, element[2 + length :], element[0])


@dataclass(frozen=True)
class StatusRecord:
    """A status record taken apart."""

    state: str
    attempts: int
    error: str | None
    result: bytes | None


def parse_status(record: bytes) -> StatusRecord:
    """Split a status record written by the Lua scripts."""
    state, attempts, length, rest = record.split(b"\n", 3)
    size = int(length)
    error = rest[:size].decode(errors="replace") if size else None
    result = rest[size + 1 :] if rest[size : size + 1] == b"1" else None
    return StatusRecord(state.decode(), int(attempts), error, result)


def result_arg(result: bytes | None) -> bytes:
    """How ``ack`` passes an optional result to Lua: a flag byte, then the bytes."""
    return b"0" if result is None else b"1" + result


def parse_dead(member: bytes) -> tuple[str, Element]:
    """Split a dead-letter member into its reason and element (never raises)."""
    try:
        _seq, length, rest = member.split(b"\n", 2)
        size = int(length)
    except ValueError:
        return "unreadable dead letter", Element("", member, 0)
    return rest[:size].decode(errors="replace"), unpack_element(rest[size:])


def bound_reason(text: str) -> str:
    """``text`` cut to ``MAX_REASON_CHARS``, keeping its head and its tail (where errors are)."""
    if len(text) <= MAX_REASON_CHARS:
        return text
    head = MAX_REASON_CHARS // 4
    tail = MAX_REASON_CHARS - head - 64
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[-tail:]}"


def make_receipt(token: int, consumer_id: str) -> str:
    """The receipt of one delivery: its fencing token and the consumer that holds it."""
    return f"{token}:{consumer_id}"


def parse_receipt(receipt: str) -> tuple[str, str]:
    """``(consumer_id, token)`` from a receipt made by ``make_receipt`` (the scripts' order)."""
    token, _, consumer_id = receipt.partition(":")
    return consumer_id, token
