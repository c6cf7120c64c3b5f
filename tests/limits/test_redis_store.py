"""RedisStore on a real redis-server: the same GCRA, slots and pauses as the in-process store,
atomic across clients, on Redis's clock, with slots that come back when their holder dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.services import RedisServer

from cllm.limits import Bucket, Limits
from cllm.limits.redis_store import RedisStore


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_server.url, lease=0.6)
    yield s
    await s.aclose()


async def test_gcra_spaces_reservations_and_refunds_move_it_back(store: RedisStore) -> None:
    # TPM 60k: one token every millisecond. 20k reserved now; the next waits 20 s.
    tpm = Bucket("t", 20_000, 60 / 60_000)
    assert await store.reserve([tpm], "pause") == 0
    wait = await store.reserve([tpm], "pause")
    assert 19.9 < wait <= 20.0
    # A refund of 15k brings the budget back to 5 s ahead; 10k more then waits ~5 s, not 20.
    await store.adjust(Bucket("t", -15_000, 60 / 60_000))
    assert 4.9 < await store.reserve([tpm], "pause") <= 5.0
    await store.adjust(Bucket("t", -1_000_000, 60 / 60_000))  # never before now
    assert await store.reserve([tpm], "pause") == 0


async def test_all_buckets_or_none(store: RedisStore) -> None:
    rpm = Bucket("r", 1, 60 / 6000)  # 10 ms
    busy = Bucket("b", 1, 1.0)
    assert await store.reserve([busy], "p") == 0
    assert await store.reserve([rpm, busy], "p") > 0.9
    r: Any = store.redis
    assert await r.get("r") is None  # the refused reservation charged nothing


async def test_a_pause_holds_every_reservation_back(store: RedisStore) -> None:
    await store.pause("p", 0.5)
    await store.pause("p", 0.1)  # a shorter one does not shorten it
    assert 0.4 < await store.reserve([], "p") <= 0.5
    await asyncio.sleep(0.55)
    assert await store.reserve([], "p") == 0


async def test_slots_are_shared_and_come_back_when_their_holder_dies(redis_server: RedisServer) -> None:
    a, b = RedisStore(redis_server.url, lease=0.6), RedisStore(redis_server.url, lease=0.6)
    try:
        # The same holder name in two processes is two holders.
        assert await a.acquire("slots", "serve:1", 2)
        assert await a.acquire("slots", "serve:1", 2)  # already held: still one slot
        assert await b.acquire("slots", "serve:1", 2)
        assert not await b.acquire("slots", "serve:2", 2)
        # Held longer than a lease: renewed, so still refused.
        await asyncio.sleep(1.0)
        assert not await b.acquire("slots", "serve:2", 2)
        await b.release("slots", "serve:1")
        assert await b.acquire("slots", "serve:2", 2)
        # A dies (it stops renewing): its slot is free again within a lease.
        assert a._renewer is not None
        a._stop_renewing()
        died = time.monotonic()
        while not await b.acquire("slots", "serve:3", 2):
            assert time.monotonic() - died < 1.5
            await asyncio.sleep(0.05)
        assert await b.in_use("slots") == 2
    finally:
        await a.aclose()
        await b.aclose()


async def test_limits_on_two_stores_share_one_concurrency_budget(redis_server: RedisServer) -> None:
    stores = [RedisStore(redis_server.url), RedisStore(redis_server.url)]
    limits = [Limits(concurrency=3, name="shared", store=s) for s in stores]
    running = 0
    most = 0

    async def one(i: int) -> None:
        nonlocal running, most
        permit = await limits[i % 2].acquire("m")
        assert permit is not None
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        await permit.finish(None)

    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(12))), 20)
        assert most == 3
    finally:
        for s in stores:
            await s.aclose()


async def test_a_late_wake_up_is_caught_up_as_in_memory(store: RedisStore) -> None:
    # One request every 0.2 s, 0.1 s of slack: granted 50 ms late, the next is due 0.15 s later.
    bucket = Bucket("late", 1, 0.2, 0.1)
    assert await store.reserve([bucket], "p") == 0
    wait = await store.reserve([bucket], "p")
    await asyncio.sleep(wait + 0.05)
    assert await store.reserve([bucket], "p") == 0
    assert 0.1 < await store.reserve([bucket], "p") <= 0.16
