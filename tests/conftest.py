"""Shared fixtures. Redis fixtures (a real redis-server per session on a free port) live in
``tests.redis_fixtures``, Redis Cluster and Sentinel ones in ``tests.redis_topology_fixtures``;
every test that touches Redis uses them, never 127.0.0.1:6379."""

pytest_plugins = ["tests.redis_fixtures", "tests.redis_topology_fixtures"]
