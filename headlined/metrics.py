"""Prometheus metrics, opt-in (``metrics: {listen: 127.0.0.1:9464}``).

The figures are read at scrape time from the same document ``headlined status`` shows, so
there is one bookkeeping, not two. Process metrics (CPU, RSS, open files) come from
prometheus-client's own collectors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

Document = Callable[[], dict[str, Any]]


class HeadlinedCollector(Collector):
    """Turns the status document into metric families on every scrape."""

    def __init__(self, document: Document) -> None:
        self._document = document

    def collect(self) -> Iterator[Metric]:
        """Yield one family per figure, labelled by source or database."""
        doc = self._document()
        now = time.time()
        sources: dict[str, dict[str, Any]] = doc.get("sources", {})
        families: list[tuple[CounterMetricFamily | GaugeMetricFamily, str]] = [
            (
                CounterMetricFamily(
                    "headlined_polls", "Poll attempts since start", labels=["source"]
                ),
                "polls",
            ),
            (
                CounterMetricFamily(
                    "headlined_new_records", "Records stored since start", labels=["source"]
                ),
                "new_records",
            ),
            (
                CounterMetricFamily(
                    "headlined_poll_errors", "Failed polls since start", labels=["source"]
                ),
                "errors",
            ),
            (
                GaugeMetricFamily(
                    "headlined_records", "Records stored for the source, ever", labels=["source"]
                ),
                "records",
            ),
            (
                GaugeMetricFamily(
                    "headlined_gaps", "Detected losses for the source, ever", labels=["source"]
                ),
                "gaps",
            ),
            (
                GaugeMetricFamily(
                    "headlined_poll_interval_seconds", "Current polling interval", labels=["source"]
                ),
                "interval_s",
            ),
            (
                GaugeMetricFamily(
                    "headlined_arrival_rate", "Estimated records per second", labels=["source"]
                ),
                "rate_per_s",
            ),
            (
                GaugeMetricFamily(
                    "headlined_window_records",
                    "Records in a full window, as gap detection uses it",
                    labels=["source"],
                ),
                "window",
            ),
        ]
        since = GaugeMetricFamily(
            "headlined_seconds_since_last_success",
            "Seconds since the last successful poll",
            labels=["source"],
        )
        for name, figures in sources.items():
            for family, key in families:
                value = figures.get(key)
                if value is not None:
                    family.add_metric([name], float(value))
            if figures.get("last_success") is not None:
                since.add_metric([name], now - float(figures["last_success"]))
        yield from (family for family, _ in families)
        yield since
        yield from self._journal(doc.get("journal"))
        yield from self._export(doc.get("export", {}))

    @staticmethod
    def _journal(journal: dict[str, Any] | None) -> Iterator[Metric]:
        if not journal:
            return
        yield GaugeMetricFamily(
            "headlined_journal_waiting_polls",
            "Polls committed to the journal, not yet applied to DuckDB",
            value=float(journal.get("waiting_polls", 0)),
        )
        yield CounterMetricFamily(
            "headlined_journal_segments_set_aside",
            "Journal segments DuckDB refused three times, kept in journal/failed/",
            value=float(journal.get("set_aside", 0)),
        )

    @staticmethod
    def _export(export: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        chunks = GaugeMetricFamily(
            "headlined_export_chunks", "Export chunks by state", labels=["database", "state"]
        )
        rows = GaugeMetricFamily(
            "headlined_export_rows", "Rows exported to Parquet", labels=["database"]
        )
        for database, figures in export.items():
            for state, count in figures.get("chunks", {}).items():
                chunks.add_metric([database, state], float(count))
            rows.add_metric([database], float(figures.get("rows", 0)))
        yield chunks
        yield rows


class MetricsServer:
    """The HTTP endpoint (prometheus-client's own, on a daemon thread)."""

    def __init__(self, listen: str, document: Document) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(HeadlinedCollector(document))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve (raises OSError when the address is taken)."""
        self._server, self._thread = start_http_server(self.port, self.host, self.registry)

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
