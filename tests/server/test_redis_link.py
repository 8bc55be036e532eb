"""The APPEND script's own connection (server/ha/link.py), against a real redis-server: it
dials again after whatever left it in doubt — its connection killed, the script flushed —
and the append still goes through once, and it logs in and selects the database as the
`--store` URL says, as the coredis client does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from faktory_py.server.ha.link import CLIENT_NAME
from faktory_py.store.redis.keys import Keys
from helpers.async_client import AsyncClient
from helpers.redis import RedisServer, unique_name
from test_redis_oplog import config_for, job, serving


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis(port=redis_server.port, decode_responses=False) as client:
        yield client


async def link_clients(r: coredis.Redis[bytes]) -> list[dict[str, str]]:
    """The CLIENT LIST entries of append links."""
    return [client for client in await r.client_list() if client.get("name") == CLIENT_NAME]


async def test_a_killed_connection_and_a_flushed_script_are_dialled_again(tmp_path, redis_server, r) -> None:  # type: ignore[no-untyped-def]
    name = unique_name()
    keys = Keys(name)
    with trio.fail_after(20):
        async with serving(config_for(tmp_path, f"{redis_server.url}?name={name}")) as server:
            link = server.durable.link
            client = await AsyncClient.connect(server.port)
            assert await client.push(job("job-00000001")) == b"OK"
            assert link.dials == 1
            before = {c["id"] for c in await link_clients(r)}
            await r.client_kill(identifier=int(before.pop()))
            assert await client.push(job("job-00000002")) == b"OK"  # lost connection: dialled again
            assert link.dials == 2
            await r.script_flush()
            assert await client.push(job("job-00000003")) == b"OK"  # -NOSCRIPT: dialled again, loaded again
            assert link.dials == 3
            await client.aclose()
    # each PUSH once, after the takeover's epoch marker
    assert [e.identifier for e in await r.xrange(keys.log)] == [b"%d-0" % i for i in range(1, 5)]


async def test_it_logs_in_and_selects_the_database_of_the_url(tmp_path, redis_server, r) -> None:  # type: ignore[no-untyped-def]
    name, user = unique_name(), unique_name()
    keys = Keys(name)
    assert redis_server.command("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all") == "OK"
    try:
        url = f"redis://{user}:s3cret@127.0.0.1:{redis_server.port}/5?name={name}"
        with trio.fail_after(20):
            async with serving(config_for(tmp_path, url)) as server:
                client = await AsyncClient.connect(server.port)
                assert await client.push(job("job-00000001")) == b"OK"
                await client.aclose()
                [link] = [c for c in await link_clients(r) if c["user"] == user]
                assert link["db"] == 5
        async with coredis.Redis(port=redis_server.port, db=5, decode_responses=False) as db5:
            assert await db5.xlen(keys.log) == 2
        assert await r.xlen(keys.log) == 0
    finally:
        redis_server.command("ACL", "DELUSER", user)
