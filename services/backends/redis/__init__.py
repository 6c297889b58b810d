"""The redis backend (``redis://``, ``rediss://``, ``unix://``): jobs in a Redis server.

``queue`` is the backend class and its data-flow picture; ``keys`` the key layout, ``scripts``
the Lua that changes state atomically, ``reads`` the cheap reads, ``lease`` a consumer's
heartbeat, ``health`` the server checks, ``connection`` the client and its error mapping.
"""
