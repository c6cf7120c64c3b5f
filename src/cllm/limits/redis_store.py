"""`RedisStore`: the `LimiterStore` in Redis, so that every process sharing it shares one budget.

Each operation is one Lua script, atomic in Redis and timed by ``redis.call('TIME')``, so the
processes' own clocks never matter and no two of them can both take the last unit of a budget:

- rates are the GCRA of `cllm.limits.store`, one key per bucket holding its ``tat`` (expiring
  once it has passed, when it means nothing any more);
- concurrency slots are a sorted set of holders scored by when their lease ends. The store renews
  the leases of the slots its process holds; a process that dies stops renewing, and its slots
  come back after at most one lease;
- a pause (a provider's 429 with ``Retry-After``) is one key holding when it ends.

The keys a `cllm.Limits` names for one request (its buckets and the model's pause key) are used
by one script together, so on Redis Cluster they would have to share a slot: use a single Redis
(or one with replicas and Sentinel). A store belongs to one event loop, like its Redis client.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from cllm.limits.store import Bucket

__all__ = ["RedisStore"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_RESERVE = (
    _NOW
    + """
local paused = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if paused > 0 then return tostring(paused) end
local wait = 0
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat - now > wait then wait = tat - now end
end
if wait > 0 then return tostring(wait) end
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  -- granted at most `slack` after tat: charged from tat, so late wake-ups do not add up
  if not (tat > 0 and now - tat <= tonumber(ARGV[3 * i - 3])) then tat = math.max(tat, now) end
  local later = tat + tonumber(ARGV[3 * i - 5]) * tonumber(ARGV[3 * i - 4])
  redis.call('SET', KEYS[i], string.format('%.6f', later), 'PX', math.ceil((later - now) * 1000) + 1000)
end
return '0'
"""
)

_ADJUST = (
    _NOW
    + """
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local later = math.max(tat + tonumber(ARGV[1]) * tonumber(ARGV[2]), now)
if later > now then
  redis.call('SET', KEYS[1], string.format('%.6f', later), 'PX', math.ceil((later - now) * 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""
)

_ACQUIRE = (
    _NOW
    + """
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 2000))
return 1
"""
)

_RENEW = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 2000))
return 1
"""
)

_PAUSE = (
    _NOW
    + """
local untill = now + tonumber(ARGV[1])
if untill > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.6f', untill), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""
)


class RedisStore:
    """A `cllm.limits.LimiterStore` in Redis.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` (or give ``client``).
        client: a ``redis.asyncio.Redis`` to use instead of making one.
        lease: seconds a concurrency slot outlives the process holding it.
    """

    def __init__(self, url: str | None = None, *, client: Any = None, lease: float = 30.0) -> None:
        if client is None:
            if url is None:
                raise ValueError("give a Redis url or client")
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self.redis = client
        self.lease = lease
        # Holder names are unique per `Limits`, not per process: this keeps two processes' apart.
        self._prefix = uuid.uuid4().hex[:12]
        self._held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self._reserve = client.register_script(_RESERVE)
        self._adjust = client.register_script(_ADJUST)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._pause = client.register_script(_PAUSE)

    def _holder(self, holder: str) -> str:
        return f"{self._prefix}:{holder}"

    async def reserve(self, buckets: Sequence[Bucket], pause_key: str) -> float:
        args: list[Any] = []
        for b in buckets:
            args += [repr(float(b.cost)), repr(float(b.interval)), repr(float(b.slack))]
        wait = await self._reserve(keys=[pause_key, *(b.key for b in buckets)], args=args)
        return max(0.0, float(wait))

    async def adjust(self, bucket: Bucket) -> None:
        await self._adjust(keys=[bucket.key], args=[repr(float(bucket.cost)), repr(float(bucket.interval))])

    async def acquire(self, key: str, holder: str, limit: int) -> bool:
        name = self._holder(holder)
        taken = bool(await self._acquire(keys=[key], args=[name, limit, repr(float(self.lease))]))
        if taken:
            self._held.setdefault(key, set()).add(name)
            self._keep_renewing()
        return taken

    async def release(self, key: str, holder: str) -> None:
        name = self._holder(holder)
        held = self._held.get(key)
        if held is not None:
            held.discard(name)
            if not held:
                del self._held[key]
        await self.redis.zrem(key, name)

    async def pause(self, key: str, seconds: float) -> None:
        await self._pause(keys=[key], args=[repr(float(seconds))])

    async def in_use(self, key: str) -> int:
        """How many unexpired slots under ``key`` are held, by any process."""
        t = await self.redis.time()
        return int(await self.redis.zcount(key, f"({t[0] + t[1] / 1e6}", "+inf"))

    def _keep_renewing(self) -> None:
        if self._closed:
            return
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_loop(), name="cllm-limits-leases"
            )

    async def _renew_loop(self) -> None:
        while self._held and not self._closed:
            await asyncio.sleep(self.lease / 3)
            for key, names in list(self._held.items()):
                if names and not self._closed:
                    # A failed renewal is retried next time; a slot outlives it by two thirds of a lease.
                    with contextlib.suppress(Exception):
                        await self._renew(keys=[key], args=[repr(float(self.lease)), *names])

    def _stop_renewing(self) -> asyncio.Task[None] | None:
        """Stop renewing this store's leases, as a process that dies stops: its slots come back
        after at most one lease."""
        self._closed = True
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
        return renewer

    async def aclose(self) -> None:
        """Stop renewing leases and close the Redis client."""
        renewer = self._stop_renewing()
        if renewer is not None:
            # A cancellation that lands inside a Redis command can come out of the client as an
            # error, which the loop would retry: the flag then ends it at its next wake-up.
            await asyncio.wait([renewer], timeout=self.lease)
        with contextlib.suppress(Exception):
            await self.redis.aclose()
