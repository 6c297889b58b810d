"""The redis backend (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
``redis+sentinel://``): jobs in a Redis (or Valkey) server, a Redis Cluster, or a Sentinel-managed
master.

``queue`` is the backend class and its data-flow picture; ``keys`` the key layout (one hash tag
per queue), ``scripts`` the Lua that changes state atomically, ``calls`` the script calls with
their queue's keys and tag, ``fetching`` how a consumer takes jobs in priority order and waits,
``routing`` grouping by queue and cluster slot, ``reads`` the cheap reads, ``lease`` a
consumer's heartbeat, ``health`` the server checks, ``durability`` writes confirmed by replicas
(``--durable``), ``connection``, ``urls`` and ``topology`` the clients for each URL form and
their error mapping, ``fleet`` the fleet registry, ``aio`` the asyncio backend of ``serve``.
"""
