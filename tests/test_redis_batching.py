"""The auto-pipelining Redis client, against the test's own redis-server: one pipeline per turn of the
event loop, each caller its own reply or error, scripts loaded again after a flush, outages to all."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sio_push.engines.redis.batching import MAX_BATCH, Batching

from .conftest import TIMEOUT, free_port


@pytest.fixture
async def clients(redis_server) -> AsyncIterator[tuple[Batching, redis.Redis, str]]:
    """The batching client, a plain one over the same pool (it owns the pool), and a key prefix."""
    plain = redis.Redis.from_pool(redis.ConnectionPool.from_url(redis_server.url))
    batching = Batching(connection_pool=plain.connection_pool)
    yield batching, plain, f"batching-{uuid.uuid4().hex[:8]}:"
    await batching.aclose()
    await plain.aclose()


async def test_commands_issued_together_go_as_one_pipeline_and_each_caller_gets_its_reply(clients):
    batching, plain, prefix = clients
    await plain.mset({f"{prefix}{n}": n for n in range(50)})
    before = batching.batches
    replies = await asyncio.wait_for(asyncio.gather(*(batching.get(f"{prefix}{n}") for n in range(50))), TIMEOUT)
    assert replies == [str(n).encode() for n in range(50)]
    assert batching.batches - before == 1


async def test_a_queue_longer_than_a_batch_is_sent_as_several(clients):
    batching, _, prefix = clients
    before = batching.batches
    count = MAX_BATCH * 2 + 1
    replies = await asyncio.wait_for(asyncio.gather(*(batching.incr(f"{prefix}n") for _ in range(count))), TIMEOUT)
    assert sorted(replies) == list(range(1, count + 1))
    assert batching.batches - before == 3


async def test_an_error_reaches_only_the_command_that_caused_it(clients):
    batching, plain, prefix = clients
    await plain.set(f"{prefix}string", "x")
    wrong_type, fine = await asyncio.gather(
        batching.hget(f"{prefix}string", "field"), batching.get(f"{prefix}string"), return_exceptions=True
    )
    assert isinstance(wrong_type, ResponseError) and "WRONGTYPE" in str(wrong_type)
    assert fine == b"x"


async def test_a_script_runs_again_after_redis_forgot_it(clients):
    batching, plain, prefix = clients
    script = batching.register_script("return redis.call('INCR', KEYS[1])")
    assert await script(keys=[f"{prefix}s"]) == 1
    await plain.script_flush()
    results = await asyncio.wait_for(asyncio.gather(*(script(keys=[f"{prefix}s"]) for _ in range(5))), TIMEOUT)
    assert sorted(results) == [2, 3, 4, 5, 6]


async def test_a_caller_that_gives_up_does_not_disturb_the_others(clients):
    batching, plain, prefix = clients
    await plain.set(f"{prefix}k", "v")
    abandoned = asyncio.ensure_future(batching.get(f"{prefix}k"))
    kept = asyncio.ensure_future(batching.get(f"{prefix}k"))
    await asyncio.sleep(0)  # both queued
    abandoned.cancel()
    assert await asyncio.wait_for(kept, TIMEOUT) == b"v"
    assert abandoned.cancelled()


async def test_an_unreachable_redis_fails_every_caller_of_the_batch():
    pool = redis.ConnectionPool.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    plain = redis.Redis.from_pool(pool)
    batching = Batching(connection_pool=pool)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(batching.get("a"), batching.set("b", 1), return_exceptions=True), TIMEOUT
        )
        assert all(isinstance(result, RedisConnectionError) for result in results)
    finally:
        await batching.aclose()
        await plain.aclose()


async def test_a_batch_past_its_timeout_fails_its_callers_and_the_next_one_gets_through(redis_server):
    # Replies have no read timeout each (the pool has no socket timeout): the batch as a whole is bounded.
    plain = redis.Redis.from_pool(redis.ConnectionPool.from_url(redis_server.url))
    batching = Batching(connection_pool=redis.ConnectionPool.from_url(redis_server.url), timeout=0.5, owns_pool=True)
    try:
        assert await batching.ping()
        await plain.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # Redis answers no client for 1.5 s
        results = await asyncio.wait_for(
            asyncio.gather(batching.get("a"), batching.set("b", 1), return_exceptions=True), TIMEOUT
        )
        assert all(isinstance(result, RedisTimeoutError) for result in results), results
        await plain.execute_command("CLIENT", "UNPAUSE")
        assert await asyncio.wait_for(batching.ping(), TIMEOUT)  # on a fresh connection, in step
    finally:
        await batching.aclose()
        await plain.aclose()
