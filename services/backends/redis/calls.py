"""Script calls of one queue: ``EVALSHA`` with the script's declared ``KEYS`` and the queue's tag.

Every queue script (``scripts``) takes the queue's fixed keys in ``KEYS`` (``SCRIPT_KEYS``) and
its tag as ``ARGV[1]``; ``Scripts`` adds both, so callers pass only the script's own arguments.
The ``EVALSHA`` head of a (script, queue) pair is built once and kept: it is on every put and
fetch. Several calls, of one script or several, on one queue or several, go in one pipeline
(``run_all``: one round trip per node); a call that found the script missing (Redis restarted,
``SCRIPT FLUSH``) is sent again on its own, and only that one: the others ran, and must not run
twice. ``run_confirmed`` is ``run_all`` for durable writes (``durability``): per queue, the
calls and a replicas' ``WAIT`` in one pipeline on the queue's master. ``run_kept`` is ``run``
for the put path: the head is packed into RESP bytes once per (script, queue), and the call
goes out on a kept connection (``KeptConnections``) where the client is one server's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import redis

from services.backends.redis import keys
from services.backends.redis import scripts as lua
from services.backends.redis.connection import KeptConnections, guarded
from services.backends.redis.durability import Confirmer
from services.backends.redis.routing import by_queue
from services.errors import BackendUnavailableError

ScriptCall = tuple[str, str, Sequence[Any]]
"""``(script name, queue, arguments after the tag)``: one call of ``run_all``."""

_HEADS_KEPT = 4096
"""Most ``EVALSHA`` heads kept per client (queues are tens, not thousands)."""


def ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds (never negative), as the scripts take durations."""
    return max(round(seconds * 1000), 0)


class ScriptHeads:
    """The named queue scripts registered on one client, and their ``EVALSHA`` heads per
    queue (the asyncio backend's calls share this half)."""

    def __init__(self, client: Any, names: Sequence[str], where: str) -> None:
        self._client = client
        self.where = where
        self._scripts = {name: client.register_script(getattr(lua, name)) for name in names}
        self._heads: dict[tuple[str, str], tuple[Any, ...]] = {}

    def head(self, name: str, queue: str) -> tuple[Any, ...]:
        """``(sha, numkeys, *KEYS, tag)``: what precedes the arguments of ``name`` on ``queue``."""
        found = self._heads.get((name, queue))
        if found is None:
            declared = keys.declared(queue, lua.SCRIPT_KEYS[name])
            found = (self._scripts[name].sha, len(declared), *declared, keys.tag(queue))
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            self._heads[(name, queue)] = found
        return found

    def add(self, pipe: Any, name: str, queue: str, args: Sequence[Any]) -> None:
        """Queue one call on ``pipe`` (a pipeline of this client)."""
        pipe.evalsha(*self.head(name, queue), *args)

    def unloaded(self, what: str, calls: Sequence[ScriptCall], replies: Sequence[Any]) -> list[int]:
        """Indexes of the ``calls`` whose pipelined reply says the script was missing (to send
        again, alone); any other error among ``replies`` is raised, mapped by ``guarded``."""
        missing = []
        for index, reply in enumerate(replies):
            if index < len(calls) and isinstance(reply, redis.exceptions.NoScriptError):
                missing.append(index)
            elif isinstance(reply, Exception):
                with guarded(what, self.where):
                    raise reply
        return missing

    def source(self, name: str) -> str:
        """The Lua of the script ``name`` (to load it on one node)."""
        return str(self._scripts[name].script)

    def add_all(self, pipe: Any, calls: Sequence[ScriptCall]) -> None:
        """Queue every one of ``calls`` on ``pipe``."""
        for name, queue, args in calls:
            self.add(pipe, name, queue, args)

    def loader(self, name: str, queue: str, args: Sequence[Any]) -> Any:
        """The call through ``Script.__call__``, which loads the script first if missing (a
        coroutine on an asyncio client)."""
        declared = keys.declared(queue, lua.SCRIPT_KEYS[name])
        return self._scripts[name](keys=list(declared), args=[keys.tag(queue), *args])


class Scripts(ScriptHeads):
    """``ScriptHeads`` on a blocking client: calls one at a time or pipelined."""

    def __init__(self, client: Any, names: Sequence[str], where: str) -> None:
        super().__init__(client, names, where)
        self._kept = KeptConnections.of(client)
        """None where the client is not one server's (nothing connects before a call)."""
        self._packed: dict[tuple[str, str], tuple[int, bytes]] = {}
        """Per (script, queue): how many items ``head`` has, and they as RESP bulk strings."""

    def run(self, name: str, what: str, queue: str, *args: Any) -> Any:
        """One call of ``name`` on ``queue``; ``what`` names the operation for errors."""
        head = self.head(name, queue)
        with guarded(what, self.where):
            try:
                # EVALSHA straight away: redis-py's Script.__call__ costs a few microseconds
                # more per call, which shows on the one-round-trip put path.
                return self._client.evalsha(*head, *args)
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                return self.loader(name, queue, args)

    def run_kept(self, name: str, what: str, queue: str, *args: Any) -> Any:
        """``run``, sent pre-packed on a kept connection when the client is one server's.

        For a caller that repeats a call whose reply was lost (the put path): a connection
        closed under a busy caller fails its call, where the pool would reconnect first.
        """
        if self._kept is None:
            return self.run(name, what, queue, *args)
        packed = self._pack(name, queue, args)
        try:
            return self._kept.call(packed)
        except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
            with guarded(what, self.where):
                return self.loader(name, queue, args)
        except Exception:  # mapped as in ``run``, but ``guarded`` entered only now (~1 us)
            with guarded(what, self.where):
                raise

    def _pack(self, name: str, queue: str, args: Sequence[Any]) -> bytes:
        """``EVALSHA`` of ``name`` on ``queue`` with ``args`` as RESP, as redis-py packs it."""
        found = self._packed.get((name, queue))
        if found is None:
            head = self.head(name, queue)
            found = len(head) + 1, b"".join(map(self._bulk, ("EVALSHA", *head)))
            if len(self._packed) >= _HEADS_KEPT:
                self._packed.clear()
            self._packed[(name, queue)] = found
        count, head_bytes = found
        parts = [b"*%d\r\n" % (count + len(args)), head_bytes]
        for arg in args:
            # redis-py's own rules (DataError for a bool, a None...); bytes, the bodies, as is.
            data = arg if type(arg) is bytes else self._encode(arg)
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
        # One buffer, one send: the body is copied once, as redis-py copies any under 6 kB.
        return b"".join(parts)

    def _bulk(self, value: Any) -> bytes:
        data = self._encode(value)
        return b"$%d\r\n%b\r\n" % (len(data), data)

    @functools.cached_property
    def _encode(self) -> Any:
        return self._client.get_encoder().encode

    def run_many(
        self, name: str, what: str, queue: str, calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Several calls of ``name`` on ``queue`` (each bounded), pipelined."""
        if len(calls) == 1:
            return [self.run(name, what, queue, *calls[0])]
        return self.run_all(what, [(name, queue, args) for args in calls])

    def run_all(
        self, what: str, calls: Sequence[ScriptCall], raw: Sequence[Sequence[Any]] = ()
    ) -> list[Any]:
        """``calls`` then the ``raw`` commands in one pipeline; their replies in order."""
        with guarded(what, self.where):
            pipe = self._client.pipeline(transaction=False)
            for name, queue, args in calls:
                self.add(pipe, name, queue, args)
            for command in raw:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
        out = list(replies)
        for index in self.unloaded(what, calls, out):
            with guarded(what, self.where):
                out[index] = self.loader(*calls[index])
        return out

    def run_confirmed(
        self, confirmer: Confirmer, what: str, calls: Sequence[ScriptCall]
    ) -> list[Any]:
        """``run_all`` for durable writes: per queue, its calls then ``WAIT`` in one pipeline on
        the queue's master; their replies in order, once enough replicas have them."""
        out: list[Any] = [None] * len(calls)
        for queue, indexes in by_queue(range(len(calls)), lambda i: calls[i][1]).items():
            group = [calls[i] for i in indexes]
            fence = keys.of(queue).seq
            replies = confirmer.run(fence, functools.partial(self.add_all, calls=group), what)
            missing = self.unloaded(what, group, replies)
            if missing:  # Redis restarted, or SCRIPT FLUSH: load on that node, send those again
                again = [group[i] for i in missing]
                for name in {name for name, _, _ in again}:
                    confirmer.load(fence, self.source(name))
                resent = confirmer.run(fence, functools.partial(self.add_all, calls=again), what)
                if self.unloaded(what, again, resent):  # raises any other error
                    raise BackendUnavailableError(f"{what}: Redis lost the scripts again")
                for index, reply in zip(missing, resent, strict=True):
                    replies[index] = reply
            for index, reply in zip(indexes, replies, strict=True):
                out[index] = reply
        return out
