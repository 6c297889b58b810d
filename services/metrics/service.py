"""What an asyncio HTTP producer (``conveyor serve``) shows at its ``GET /metrics``.

::

    POST accepted --enqueued.add(queue, job, n)--> EnqueuedCounter --+
    GET /metrics --await render(accept, backend)--> read_depth -------+--> bytes, content type

The route stays a few lines and knows nothing of Prometheus::

    body, content_type = await metrics.render(request.headers.get("accept"), backend)
    return Response(body, media_type=content_type)

Rendering the counter is cheap and runs on the event loop; the depth is read with the
backend's own coroutines under ``SCRAPE_TIMEOUT_S`` (``services.metrics.depth``).
"""

from __future__ import annotations

from services.metrics.depth import SCRAPE_TIMEOUT_S, AsyncCounts, read_depth
from services.metrics.exposition import MetricsRegistry
from services.metrics.families import EnqueuedCounter


class ServiceMetrics:
    """The enqueued counter of one service, and its exposition with the queues' depth."""

    def __init__(self, *, timeout_s: float = SCRAPE_TIMEOUT_S) -> None:
        self.enqueued = EnqueuedCounter()
        """Count each job once the backend accepted it (``add(queue, job, count)``)."""
        self._registry = MetricsRegistry(self.enqueued.families)
        self._timeout_s = timeout_s

    async def render(self, accept: str | None, backend: AsyncCounts) -> tuple[bytes, str]:
        """The exposition now (Prometheus text, or OpenMetrics if ``accept`` asks for it)."""
        depth = await read_depth(backend, timeout_s=self._timeout_s)
        return self._registry.render(accept, extra=depth)
