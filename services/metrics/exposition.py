"""The one module that imports ``prometheus_client``: metric families in, exposition out.

::

    sources (callables returning ``Family`` lists: a supervisor's pool, a queue's depth, an
    enqueued counter) -> MetricsRegistry -> render() -> bytes + content type
                                          -> MetricsServer: GET /metrics on host:port

Every number is computed by its source when a scrape asks for it (custom collectors in
``prometheus_client``'s terms): nothing here counts, and nothing global is registered; each
``MetricsRegistry`` has its own ``CollectorRegistry``. The server is ``prometheus_client``'s
own (a thread per request in a daemon thread); it starts in ``start()``, never at import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.registry import CollectorRegistry

from services.errors import ConfigError
from services.metrics.families import Family, HistogramSample, Kind, Sample

log = logging.getLogger("conveyor.metrics")

Source = Callable[[], Iterable[Family]]
"""Something that computes metric families when a scrape asks."""


class MetricsRegistry:
    """The sources one ``/metrics`` endpoint shows."""

    def __init__(self, *sources: Source) -> None:
        self._sources = list(sources)
        # No describe(), no auto-describe: registering never runs a source (no backend call).
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self._sources))

    def add(self, source: Source) -> None:
        """Show ``source``'s families too (before the endpoint is served)."""
        self._sources.append(source)

    def render(
        self, accept: str | None = None, *, extra: Iterable[Family] = ()
    ) -> tuple[bytes, str]:
        """The exposition of every source now, and its content type: Prometheus text, or
        OpenMetrics when ``accept`` (a request's ``Accept`` header) asks for it.

        ``extra``: families computed by the caller for this scrape only (an asyncio service
        reads the queues' depth with its own coroutines: ``depth.read_depth``).
        """
        encode, content_type = choose_encoder(accept or "")
        more = list(extra)
        return encode(_Collector([*self._sources, lambda: more])), content_type

    def server(self, host: str, port: int) -> MetricsServer:
        """A server for this registry on ``host:port`` (0: any free port); call ``start``."""
        return MetricsServer(self._registry, host, port)


class MetricsServer:
    """``GET /metrics`` on ``host:port`` in a daemon thread, from ``start`` to ``stop``."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen for port 0 once started)."""
        return int(self._httpd.server_port) if self._httpd is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Listen and serve; ``ConfigError`` if the address cannot be bound."""
        try:
            self._httpd, self._thread = start_http_server(
                self._port, addr=self._host, registry=self._registry
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        log.info("serving metrics on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket (a scrape in progress finishes first)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class _Collector:
    """``prometheus_client``'s custom collector over our sources."""

    def __init__(self, sources: list[Source]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in list(self._sources):
            for family in source():
                yield _metric(family)


def _metric(family: Family) -> Metric:
    if family.kind is Kind.HISTOGRAM:
        histogram = HistogramMetricFamily(family.name, family.help, labels=family.labels)
        for sample in family.samples:
            assert isinstance(sample, HistogramSample)
            buckets = [(_bound(le), count) for le, count in sample.histogram.cumulative()]
            histogram.add_metric(list(sample.labels), buckets, sample.histogram.sum)
        return histogram
    make = CounterMetricFamily if family.kind is Kind.COUNTER else GaugeMetricFamily
    metric = make(family.name, family.help, labels=family.labels)
    for sample in family.samples:
        assert isinstance(sample, Sample)
        metric.add_metric(list(sample.labels), sample.value)
    return metric


def _bound(seconds: float) -> str:
    return "+Inf" if seconds == float("inf") else repr(float(seconds))
