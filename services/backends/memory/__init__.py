"""The memory backend (``memory://``): jobs in the memory of one process tree, no server.

``backend`` is the queue the parent holds; ``channel`` is a child's side of it (request/reply
over two multiprocessing queues); ``state``, ``inflight`` and ``statuses`` are its bookkeeping.
"""
