"""Resumable streams shared through Redis, so that any server process can serve any stream.

One Redis Stream per cllm stream: entry ``0-N`` is SSE event ``N``, its field ``f`` the frame as it
was encoded once by the producer. Beside it, under the same hash tag (one Cluster slot):

- ``cllm:s:{id}:meta``: a hash with the conversation id, the last event number, ``done`` and the
  ``cancel`` flag;
- ``cllm:s:{id}:lease``: the producer's token, expiring unless the producer renews it;
- ``cllm:s:{id}:seen``: set by every reader, expiring after ``ttl`` without one.

The producer appends in batches through a script that writes only while the lease holds its token,
so a second producer for the same id is refused; each append, and a renewal every third of the
lease, extends the lease. A producer that was merely slow (its lease lapsed, but no reader has yet
declared it lost) takes its lease back; once a reader has, its writes are refused and it stops.
Readers on other processes read what they missed with ``XRANGE`` and then the live tail with ``XREAD
BLOCK``: one ordered channel, no pub/sub. A reader that finds the lease gone before the stream is
done appends one terminal ``error`` event of kind ``producer_lost`` (once, through a script that
checks nothing moved) and stops; nothing ever starts the generation again.

Readers in the producer's own process read its memory, as without Redis; Redis then costs one script
call per batch of events. If Redis cannot be reached, starting, resuming or stopping a stream raises
`StreamsUnavailable` (the routes answer 503); a running stream whose events cannot be stored stops,
and its readers get an ``error`` event of kind ``streams_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cllm.server.streams import (
    PING,
    Emit,
    ResumableStream,
    StreamRegistry,
    StreamsUnavailable,
    StreamView,
)
from cllm.server.wire import dumps, sse_frame

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisStreamRegistry", "connect", "redact"]

logger = logging.getLogger("cllm.server")

BATCH = 512
"""Most events appended (or read) in one call."""

_CREATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'conversation_id', ARGV[4], 'last', 0, 'done', 0, 'cancel', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
return 1
"""

_APPEND = """
local owner = redis.call('GET', KEYS[3])
if owner ~= ARGV[1] and (owner or redis.call('HGET', KEYS[2], 'done') ~= '0') then return -1 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[5])
local seq = tonumber(ARGV[2])
for i = 6, #ARGV do
  redis.call('XADD', KEYS[1], '0-' .. seq, 'f', ARGV[i])
  seq = seq + 1
end
if #ARGV >= 6 then redis.call('HSET', KEYS[2], 'last', seq - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], 'done', 1)
  redis.call('DEL', KEYS[3])
end
return tonumber(redis.call('HGET', KEYS[2], 'cancel') or '0')
"""

_RENEW = """
local owner = redis.call('GET', KEYS[3])
if owner ~= ARGV[1] and (owner or redis.call('HGET', KEYS[2], 'done') ~= '0') then return {-1, 0, 0} end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[4] == '1' then redis.call('SET', KEYS[4], '1', 'PX', ARGV[3]) end
return {1, tonumber(redis.call('HGET', KEYS[2], 'cancel') or '0'), redis.call('EXISTS', KEYS[4])}
"""

_LOST = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local done = redis.call('HGET', KEYS[2], 'done')
if (not done) or done == '1' then return 0 end
if redis.call('HGET', KEYS[2], 'last') ~= ARGV[1] then return 0 end
local seq = tonumber(ARGV[1]) + 1
redis.call('XADD', KEYS[1], '0-' .. seq, 'f', ARGV[2])
redis.call('HSET', KEYS[2], 'last', seq, 'done', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

_CANCEL = """
local done = redis.call('HGET', KEYS[1], 'done')
if not done then return 0 end
if done == '1' then return 2 end
redis.call('HSET', KEYS[1], 'cancel', 1)
return 1
"""


def _keys(stream_id: str) -> list[str]:
    base = f"cllm:s:{{{stream_id}}}"
    return [base, base + ":meta", base + ":lease", base + ":seen"]


def redact(url: str) -> str:
    """``url`` without its password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, credentials = head.partition("://")
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{tail}" if ":" in credentials else url


def connect(url: str, connections: int) -> redis.asyncio.Redis:
    """A client for ``url`` that fails fast (seconds, not minutes) when Redis is not there.

    At most ``connections`` at once: a call that finds them all busy waits for one (5 s at most).
    """
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
    except ImportError as e:
        raise StreamsUnavailable(
            "--redis needs redis-py: install the redis extra: pip install 'cllm[redis]'"
        ) from e
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=5,
        queue_class=asyncio.Queue,  # first come, first served: a waiter is never starved
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        health_check_interval=15,
    )
    return aioredis.Redis(connection_pool=pool)


def _lost_frame(seq: int) -> bytes:
    message = "the server producing this stream stopped before it ended"
    data = {"message": message, "kind": "producer_lost", "status_code": None}
    return sse_frame("error", dumps(data), seq)


class _Mirrored(ResumableStream):
    """A stream of this process whose events also go to Redis, in batches (see `_flush`)."""

    def __init__(
        self, stream_id: str, conversation_id: str | None, dirty: Callable[[_Mirrored], None]
    ) -> None:
        super().__init__(stream_id, conversation_id)
        self.token = uuid.uuid4().hex
        self.written = 0
        self.stored = False  # the last event is in Redis
        self._dirty = dirty
        self.renewed = time.monotonic()
        self.broken: str | None = None
        self._failure: tuple[str, str] | None = None

    def append(self, event: str, data: dict[str, Any]) -> None:
        super().append(event, data)
        self._dirty(self)

    def fail(self, kind: str, message: str) -> None:
        """End the stream with an error only this process's readers get (Redis is out of reach, or
        no longer takes this process's writes), after the generation's own last event. A stream
        that has already finished here is complete for them: it is left as it is."""
        if not self.finished:
            self._failure = (kind, message)

    def finish(self) -> None:
        if self._failure is not None and not self.finished:
            kind, message = self._failure
            data = {"message": message, "kind": kind, "status_code": None}
            self.frames.append(sse_frame("error", dumps(data), len(self.frames) + 1))
        super().finish()
        self._dirty(self)


class _Remote:
    """A stream produced by another process, read from Redis."""

    def __init__(
        self,
        registry: RedisStreamRegistry,
        stream_id: str,
        conversation_id: str | None,
        last: int,
        done: bool,
    ) -> None:
        self.registry = registry
        self.id = stream_id
        self.conversation_id = conversation_id
        self._last = last
        self._done = done

    @property
    def last_id(self) -> int:
        return self._last

    @property
    def finished(self) -> bool:
        return self._done

    def head(self) -> bytes:
        return sse_frame("stream", dumps({"stream_id": self.id, "conversation_id": self.conversation_id}))

    def read(self, after: int = 0, ping_interval: float = 15.0) -> AsyncIterator[bytes]:
        return self.registry._read_remote(self, max(0, after), ping_interval)


class RedisStreamRegistry(StreamRegistry):
    """A `StreamRegistry` whose streams any process sharing the Redis at ``url`` can serve.

    Args:
        ttl: as `StreamRegistry`: how long a finished stream stays resumable, and a running one
            runs on without a reader anywhere.
        url: ``redis://``, ``rediss://`` or ``unix://``.
        lease: seconds after which a producer that stopped renewing its lease is taken for dead.
    """

    def __init__(self, ttl: float, url: str, lease: float = 10.0) -> None:
        super().__init__(ttl)
        self.url = redact(url)
        self.lease = lease
        self.redis = connect(url, connections=64)
        # Blocking reads hold a connection for their whole wait: they get their own.
        self.reader = connect(url, connections=1024)
        self._keeper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._dirty: dict[_Mirrored, None] = {}  # in the order they had something new
        self._wake = asyncio.Event()
        self._ttl_ms = max(1, int(ttl * 1000))
        self._lease_ms = max(1, int(lease * 1000))
        # A blocking read waits at most this long before it looks at the lease again.
        self._block = min(2.0, max(0.05, lease / 4))
        r = self.redis
        self._create = r.register_script(_CREATE)
        self._append = r.register_script(_APPEND)
        self._renew = r.register_script(_RENEW)
        self._lost = r.register_script(_LOST)
        self._cancel = r.register_script(_CANCEL)

    def _unavailable(self, error: BaseException) -> StreamsUnavailable:
        return StreamsUnavailable(f"the stream store (Redis at {self.url}) is unreachable: {error}")

    @contextlib.asynccontextmanager
    async def _talking(self) -> AsyncIterator[None]:
        import redis.exceptions

        try:
            yield
        except (redis.exceptions.RedisError, OSError) as e:
            raise self._unavailable(e) from e

    # -- producing ----------------------------------------------------------------------------

    async def open(
        self,
        conversation_id: str | None,
        generate: Callable[[Emit], Awaitable[object]],
        on_done: Callable[[], None] | None = None,
    ) -> StreamView:
        stream = _Mirrored(uuid.uuid4().hex, conversation_id, self._mark)
        async with self._talking():
            created = await self._create(
                keys=_keys(stream.id),
                args=[stream.token, self._lease_ms, self._ttl_ms, conversation_id or ""],
            )
        if not created:  # a 128-bit random id met another: never in practice, and never overwritten
            raise StreamsUnavailable("could not record a new stream; try again")
        self._launch(stream, generate, on_done)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="cllm-stream-appends")
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="cllm-stream-leases")
        return stream

    def _stop(self, stream: _Mirrored, kind: str, message: str) -> None:
        if stream.broken is None:
            stream.broken = kind
            logger.warning("stream %s: %s", stream.id, message)
            stream.fail(kind, message)
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()

    def _mark(self, stream: _Mirrored) -> None:
        if stream.broken is None and not stream.stored:
            self._dirty[stream] = None
            self._wake.set()

    async def _flush(self) -> None:
        """Append every stream's new events: all the streams with some in one pipelined round trip,
        one script call each, while the events that come meanwhile wait for the next one. A stream
        has at most one append in flight, so its events reach Redis in order."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = [s for s in self._dirty if s.broken is None and not s.stored]
            self._dirty.clear()
            if not batch:
                continue
            planned: list[tuple[_Mirrored, int, bool]] = []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream in batch:
                        end = min(len(stream.frames), stream.written + BATCH)
                        final = stream.finished and end == len(stream.frames)
                        args: list[Any] = [stream.token, stream.written + 1, self._ttl_ms, int(final)]
                        args += [self._lease_ms, *stream.frames[stream.written : end]]
                        await self._append(keys=_keys(stream.id)[:3], args=args, client=pipe)
                        planned.append((stream, end, final))
                    replies = await pipe.execute(raise_on_error=False)
            except Exception as e:
                replies = [e] * len(planned)
            for (stream, end, final), reply in zip(planned, replies, strict=True):
                if isinstance(reply, BaseException):
                    self._stop(stream, "streams_unavailable", str(self._unavailable(reply)))
                    continue
                stream.written = end
                if reply == -1:
                    self._stop(stream, "producer_lost", "this process lost the stream's lease")
                    continue
                if final:
                    stream.stored = True
                    continue
                if reply == 1 and stream.task is not None and not stream.task.done():
                    stream.task.cancel()
                if stream.written < len(stream.frames) or stream.finished:
                    self._mark(stream)

    async def _keep(self) -> None:
        """Renew the leases of this process's running streams, all in one round trip every third
        of a lease; stop a generation cancelled elsewhere, or read by no one for ``ttl``."""
        while True:
            await asyncio.sleep(self.lease / 3)
            running = [
                s
                for s in self._streams.values()
                if isinstance(s, _Mirrored) and not s.finished and not s.broken
            ]
            if not running:
                if not any(isinstance(s, _Mirrored) and not s.finished for s in self._streams.values()):
                    return
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream in running:
                        args: list[str | int] = [
                            stream.token,
                            self._lease_ms,
                            self._ttl_ms,
                            int(stream.readers > 0),
                        ]
                        await self._renew(keys=_keys(stream.id), args=args, client=pipe)
                    replies = await pipe.execute(raise_on_error=False)
            except Exception as e:
                replies = [e] * len(running)
            now = time.monotonic()
            for stream, reply in zip(running, replies, strict=True):
                if isinstance(reply, BaseException):
                    if now - stream.renewed > self.lease:
                        self._stop(stream, "streams_unavailable", str(self._unavailable(reply)))
                    continue
                stream.renewed = now
                status, cancel, seen = reply
                task = stream.task
                if stream.finished or task is None or task.done():
                    continue  # the writer's last append ends the lease
                if status == -1:
                    self._stop(stream, "producer_lost", "this process lost the stream's lease")
                elif cancel == 1:
                    task.cancel()
                elif not seen and stream.readers <= 0:
                    logger.info("stream %s had no reader for %g s: stopping it", stream.id, self.ttl)
                    task.cancel()

    def _arm(self, stream: ResumableStream) -> None:
        # A running stream's readers may be in other processes: the lease task watches for them.
        if stream.finished or not isinstance(stream, _Mirrored):
            super()._arm(stream)
        else:
            self._disarm(stream)

    # -- reading ------------------------------------------------------------------------------

    async def find(self, stream_id: str) -> StreamView | None:
        local = self.get(stream_id)
        if local is not None:
            return local
        r: Any = self.redis
        async with self._talking():
            conversation_id, last, done = await r.hmget(
                _keys(stream_id)[1], ["conversation_id", "last", "done"]
            )
        if last is None:
            return None
        return _Remote(self, stream_id, (conversation_id or b"").decode() or None, int(last), done == b"1")

    async def _read_remote(self, stream: _Remote, after: int, ping_interval: float) -> AsyncIterator[bytes]:
        try:
            async for piece in self._tail(stream, after, ping_interval):
                yield piece
        except StreamsUnavailable as e:
            # The reader learns why its stream ends here (with no id: it can resume once Redis is back).
            data = {"message": str(e), "kind": "streams_unavailable", "status_code": 503}
            yield sse_frame("error", dumps(data))

    async def _tail(self, stream: _Remote, after: int, ping_interval: float) -> AsyncIterator[bytes]:
        key, meta, _, seen = _keys(stream.id)
        r: Any = self.redis  # its replies are loosely typed
        position = after
        quiet_since = time.monotonic()
        seen_at = 0.0
        while True:
            async with self._talking():
                now = time.monotonic()
                if now - seen_at > self.ttl / 4:
                    await r.set(seen, b"1", px=self._ttl_ms)
                    seen_at = now
                entries = await r.xrange(key, f"(0-{position}", "+", count=BATCH)
                if not entries:
                    tail: Any = self.reader
                    reply = await tail.xread(
                        {key: f"0-{position}"}, count=BATCH, block=int(self._block * 1000)
                    )
                    entries = reply[0][1] if reply else []
            if entries:
                yield b"".join(fields[b"f"] for _, fields in entries)
                position = int(entries[-1][0].split(b"-")[1])
                quiet_since = time.monotonic()
                continue
            async with self._talking():
                last, done = await r.hmget(meta, ["last", "done"])
                if last is None or (done == b"1" and int(last) <= position):
                    return
                if done != b"1" and int(last) == position and not await r.exists(_keys(stream.id)[2]):
                    await self._lost(
                        keys=_keys(stream.id)[:3], args=[position, _lost_frame(position + 1), self._ttl_ms]
                    )
                    continue
            if time.monotonic() - quiet_since >= ping_interval:
                yield PING
                quiet_since = time.monotonic()

    # -- stopping -----------------------------------------------------------------------------

    async def cancel(self, stream_id: str) -> bool:
        if self.get(stream_id) is not None:
            return await super().cancel(stream_id)
        meta = _keys(stream_id)[1]
        async with self._talking():
            found = await self._cancel(keys=[meta])
            if found != 1:
                return bool(found)
            # Like a local cancel, answer once the generation has stopped (or its producer is gone).
            deadline = time.monotonic() + self.lease + 2 * self._block
            while time.monotonic() < deadline:
                if await self.redis.hget(meta, "done") in (b"1", None):
                    break
                if not await self.redis.exists(_keys(stream_id)[2]):
                    break
                await asyncio.sleep(0.02)
        return True

    async def health(self) -> dict[str, Any]:
        async with self._talking():
            await asyncio.wait_for(self.redis.ping(), 2)
        return {"streams": "redis"}

    async def aclose(self) -> None:
        mirrored = [s for s in self._streams.values() if isinstance(s, _Mirrored)]
        await super().aclose()
        # Let the last events (the cancellations) reach Redis, briefly.
        deadline = time.monotonic() + 2
        while any(s.broken is None and not s.stored for s in mirrored) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._flusher is not None:
            self._flusher.cancel()
        if self._keeper is not None:
            self._keeper.cancel()
        for client in (self.redis, self.reader):
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)
