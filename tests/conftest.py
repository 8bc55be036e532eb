"""Registers the shared fixtures: faktory_py server processes (helpers/servers.py), the
real Faktory (helpers/real_faktory.py) and redis-server (helpers/redis.py). Being the
suite's top conftest, it also puts tests/ on `sys.path`, which makes `helpers` importable
from every folder."""

from helpers.real_faktory import any_server, any_server_factory, real_faktory_factory  # noqa: F401
from helpers.redis import redis_server, redis_store  # noqa: F401
from helpers.servers import (  # noqa: F401
    client, emptied_client, module_server, module_server_factory, server, server_factory,
)
