"""Key names and byte layouts of the Redis backend (the Lua in ``scripts`` mirrors them).

Every key starts with ``PREFIX`` so an ACL can be limited to ``~cv:*``:

=====================  ======  ==============================================================
key                    type    content
=====================  ======  ==============================================================
``cv:q:<queue>``       list    waiting jobs, FIFO: each an *element* (header + body)
``cv:d:<queue>``       zset    delayed jobs: ``<seq>:<element>`` scored by due time (ms)
``cv:b:<queue>``       list    the queue's doorbell (at most one item) that idle consumers
                               BLPOP; rung by every push
``cv:w:<bucket>``      hash    *waiting markers* of jobs queued or delayed (see below)
``cv:n:<queue>``       hash    counters: ``inflight`` now, ``done`` and ``dead`` in total;
                               ``xq``/``xd``: cancelled jobs still in ``cv:q``/``cv:d``
``cv:x:<queue>``       hash    *tombstones*: id key -> ``q``/``d`` of cancelled jobs still in
                               ``cv:q``/``cv:d``; FETCH drops those instead of delivering them
``cv:r:<queue>``       list    ``<time>:<done>`` samples of the done counter, newest first (90
                               kept, 1 day TTL), taken by status reads for ``done_rate``
``cv:queues``          hash    every queue a job was put on -> its index (0, 1, ...), the
                               index a waiting marker records
``cv:i:<consumer>``    hash    the consumer's in-flight jobs: ``token -> <len>:<queue><element>``
``cv:p:<consumer>``    set     tokens it holds but is not running (prefetched), per heartbeat
``cv:h:<consumer>``    set     tokens taken from it by reclaim or lease recovery (1 day TTL):
                               a late settlement of one of these is *fenced*, of any other
                               token a repeat of one that already worked
``cv:leases``          zset    consumer id scored by its lease expiry (ms, Redis clock)
``cv:running``         hash    job id key -> consumer id, for ``status`` (in-flight jobs only)
``cv:dl:<queue>``      zset    dead letters: ``<seq>\\n<len>\\n<reason><element>`` by time (ms)
``cv:j:<job id>``      list    terminal status record (done/dead) + result; TTL ``result_ttl_s``
``cv:f:<job id>``      string  status record of a job waiting for its retry; TTL likewise
``cv:seq``             string  counter for delivery tokens and unique delayed members
``cv:stats``           hash    counters: fenced (rejected late settlements), recovered,
                               quarantined
``cv:marker``          string  a random *epoch*, set once per database (``SET NX``): a value
                               that changed or vanished means Redis lost its data
=====================  ======  ==============================================================

An *element* is ``[redeliveries: 1 byte][id length: 1 byte][id][body]``; an id of 32 lowercase
hex digits (``new_job_id``) is stored as 16 raw bytes with length byte 0, which keeps a queued
job's overhead at 18 bytes over its body. Elements that break this shape (written by someone
else) are dead-lettered by the script that meets them, with the reason, never delivered. A
*status record* is ``<state>\\n<attempts>\\n<len>\\n<error><0 | 1 + result>``.

**Waiting markers** make put-if-absent and ``status`` of a waiting job possible at ~12 bytes a
job. A job's *fingerprint* is 8 bytes: the first 8 bytes of a hex id (random already), else of
the SHA-1 of the id. Its first 3 hex digits pick one of 4,096 hashes ``cv:w:<3 hex digits>``;
the field is fingerprint bytes 2-8 (byte 1 is implied by the bucket, so all 64 bits count) and
the value an integer that records the state and the queue (``marker_value``): ``2 * (index +
1) + 1`` queued, ``+ 2`` scheduled (delayed), the index being the queue's in ``cv:queues``; so
``cancel`` finds a waiting job's queue from its id alone. Up to 62 queues the value stays
below 128, a 1-byte integer in a listpack like the bare state it replaced. The values 1 and 2
(queued, scheduled, queue unknown) are what markers written before ``cv:queues`` existed hold.
PUT/NACK/RETRY/HAND_BACK/REQUEUE_DEAD and FETCH (a delayed job come due) set a marker with
``HSET``, FETCH and CANCEL delete it with ``HDEL``.

Redis replicates a script's *effects*, so a marker change reaches the AOF and the replicas as
that one ~40-byte command. Two different ids clash only if their 64-bit fingerprints agree:
about n / 2^64 per put with n jobs waiting (5e-14 for a million); the second put is then
answered "present" and not stored.

Why this shape (measured on Redis 7.0, 1,000,000 waiting jobs, ``used_memory``): a key per job
costs ~65 bytes a job; hashes in 16,384 buckets with the whole 8-byte fingerprint as field and a
letter as value ~15.4; 7-byte fields ~14.3; in 4,096 buckets ~13.4; with an integer value
(2 bytes in a listpack, a letter takes 3) ~12.4, which keeps a queued job with a 207-byte body
at 248 bytes in all (``scripts/bench_worker.py --only memory``; the former string buckets: 247).
Those string buckets (10-byte records found by substring search) cost ~11 bytes, but every
change rewrote the whole bucket with ``SET``: ~2.4 KB of AOF and replication per change at a
million waiting jobs, ~24 KB at ten million, and Lua work growing with the queue. AOF bytes
per job (``scripts/bench_aof.py --jobs 100000 --backlog 1000000``, body 206 bytes): string
buckets 2,777 to enqueue and 3,146 to drain; these hashes 294 and 620, the same as with no
backlog (bare ``RPUSH``: 214). A hash stays
a compact *listpack* up to ``hash-max-listpack-entries`` fields (default 512; the 128 default
is for sorted sets): 4,096 buckets hold ~244 each at a million waiting jobs and reach 512 near
two million. Past that a bucket converts to a hashtable: still correct, but ~69 bytes a marker
instead of ~12 (raise ``hash-max-listpack-entries``, e.g. to 2048 for eight million: a listpack
lookup is a linear scan, a few microseconds at that size).

**Cancelling** cannot take the job out of its list or sorted set (that would mean finding its
element, a scan): CANCEL deletes the marker, records the terminal status (dead, "cancelled"),
counts it dead and leaves a *tombstone* in ``cv:x:<queue>``, counted in ``xq``/``xd``, which
``counts`` subtracts from the list's and the set's lengths. FETCH, meeting a tombstoned job
(as it comes due, or at the head of the list), drops it and its tombstone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from services.errors import EncodeError

PREFIX = "cv:"
MAX_REASON_CHARS = 8192
"""Reasons and tracebacks kept in dead letters and status records are cut to this size."""

_HEX_ID = re.compile(r"[0-9a-f]{32}")


def queue_key(queue: str) -> str:
    """The list of jobs waiting in ``queue``."""
    return f"{PREFIX}q:{queue}"


def delayed_key(queue: str) -> str:
    """The delayed jobs of ``queue``, by due time."""
    return f"{PREFIX}d:{queue}"


def bell_key(queue: str) -> str:
    """The doorbell list that consumers waiting on ``queue`` block on."""
    return f"{PREFIX}b:{queue}"


def inflight_key(consumer_id: str) -> str:
    """The hash of ``consumer_id``'s in-flight jobs, by fencing token."""
    return f"{PREFIX}i:{consumer_id}"


def dead_key(queue: str) -> str:
    """The dead letters of ``queue``."""
    return f"{PREFIX}dl:{queue}"


def done_key(job_id: str) -> str:
    """The terminal status record of ``job_id`` (a one-item list, so waiters can block on it)."""
    return f"{PREFIX}j:{job_id}"


def failed_key(job_id: str) -> str:
    """The status record of ``job_id`` while it waits for its next attempt."""
    return f"{PREFIX}f:{job_id}"


def counts_key(queue: str) -> str:
    """The counters of ``queue``: ``inflight``, ``done``, ``dead``."""
    return f"{PREFIX}n:{queue}"


def cancelled_key(queue: str) -> str:
    """The tombstones of ``queue``: cancelled jobs still in its list or delayed set."""
    return f"{PREFIX}x:{queue}"


MARK_QUEUED = b"1"
MARK_SCHEDULED = b"2"
"""Values of a waiting marker whose queue is unknown (written before ``cv:queues``); newer
markers hold ``marker_value``: integers, which a listpack stores in 2 bytes (a letter takes 3)."""


def marker_value(state: str, queue_index: int) -> bytes:
    """The marker of a job ``"queued"`` or ``"scheduled"`` on the queue of that index."""
    return str(2 * (queue_index + 1) + (1 if state == "queued" else 2)).encode()


def marker_state(value: bytes | str | None) -> str | None:
    """``"queued"``, ``"scheduled"`` or None: the state a marker's value (``HGET``) records."""
    number = _marker_number(value)
    if number is None:
        return None
    return "queued" if number % 2 else "scheduled"


def marker_queue_index(value: bytes | str | None) -> int | None:
    """The index in ``cv:queues`` of the queue a marker records; None when it records none."""
    number = _marker_number(value)
    return None if number is None or number < 3 else (number - 1) // 2 - 1


def _marker_number(value: bytes | str | None) -> int | None:
    try:
        number = int(value) if value else 0
    except ValueError:
        return None
    return number if number > 0 else None


def marker_at(job_id: str) -> tuple[str, bytes]:
    """The bucket key of ``job_id``'s waiting marker and its field (fingerprint bytes 2-8)."""
    sign = job_id if _HEX_ID.fullmatch(job_id) else _sha1(id_key(job_id)).hex()
    return f"{PREFIX}w:{sign[:3]}", bytes.fromhex(sign[2:16])


def _sha1(data: bytes) -> bytes:
    # A spreading function, not a security one (ids are the caller's own).
    return hashlib.sha1(data, usedforsecurity=False).digest()


RUNNING_KEY = f"{PREFIX}running"
STATS_KEY = f"{PREFIX}stats"
MARKER_KEY = f"{PREFIX}marker"
LEASES_KEY = f"{PREFIX}leases"
QUEUES_KEY = f"{PREFIX}queues"


def id_key(job_id: str) -> bytes:
    """The bytes that stand for ``job_id`` inside an element and in ``cv:running``."""
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
