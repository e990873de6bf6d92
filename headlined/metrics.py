"""Prometheus metrics, opt-in (``metrics: {listen: 127.0.0.1:9464}``).

The figures are read at scrape time from the same document ``headlined status`` shows, so
there is one bookkeeping, not two. Process metrics (CPU, RSS, open files) come from
prometheus-client's own collectors. Names follow Prometheus' conventions: base units in the
name, ``_total`` on counters, points in time as ``_timestamp_seconds`` (Unix time).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from headlined import __version__

Document = Callable[[], dict[str, Any]]

# Per source, one sample each: name, help, and the figure's key in the status document.
COUNTERS = (
    ("headlined_polls_total", "Polls since the source started, failed ones included", "polls"),
    ("headlined_new_records_total", "Records stored since the source started", "new_records"),
    ("headlined_gaps_total", "Losses detected (records left the window unseen), ever", "gaps"),
)
GAUGES = (
    ("headlined_records", "Records stored for the source, ever", "records"),
    ("headlined_poll_interval_seconds", "Current polling interval", "interval_s"),
    (
        "headlined_arrival_rate_records_per_second",
        "Estimated arrival rate of new records, as the schedule uses it",
        "rate_per_s",
    ),
    (
        "headlined_window_records",
        "Records in a full window, as gap detection uses it",
        "window",
    ),
    (
        "headlined_last_success_timestamp_seconds",
        "When the last successful poll started (Unix time)",
        "last_success",
    ),
)
# Every export chunk is in one of these; each is shown, at 0 too, so alerts see it resolve.
EXPORT_STATES = ("pending", "done", "failed", "damaged")


class HeadlinedCollector(Collector):
    """Turns the status document into metric families on every scrape."""

    def __init__(self, document: Document) -> None:
        self._document = document

    def collect(self) -> Iterator[Metric]:
        """Yield every family: build info, per source, the journal, the Parquet copy, per
        export database, the lake."""
        doc = self._document()
        info = GaugeMetricFamily(
            "headlined_build_info",
            "Always 1: the running headlined's version and Python's",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        yield from self._sources(doc.get("sources", {}))
        yield from self._journal(doc.get("journal"))
        yield from self._parquet(doc.get("parquet"))
        yield from self._export(doc.get("export", {}))
        yield from self._lake(doc.get("lake"))

    @staticmethod
    def _sources(sources: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        families: list[tuple[CounterMetricFamily | GaugeMetricFamily, str]] = [
            (CounterMetricFamily(name, text, labels=["source"]), key)
            for name, text, key in COUNTERS
        ] + [(GaugeMetricFamily(name, text, labels=["source"]), key) for name, text, key in GAUGES]
        errors = CounterMetricFamily(
            "headlined_poll_errors_total",
            "Failed polls since the source started, by error kind and HTTP status (empty: none)",
            labels=["source", "error_type", "status"],
        )
        durations = HistogramMetricFamily(
            "headlined_poll_duration_seconds",
            "How long polls took: the request with its retries, decoding and comparing",
            labels=["source"],
        )
        for name, figures in sources.items():
            for family, key in families:
                value = figures.get(key)
                if value is not None:
                    family.add_metric([name], float(value))
            for error in figures.get("errors_by_kind", []):
                status = error["http_status"]
                labels = [name, error["kind"], "" if status is None else str(status)]
                errors.add_metric(labels, float(error["polls"]))
            took = figures.get("poll_duration_s")
            if took is not None:
                buckets = [(le, float(n)) for le, n in took["le"].items()]
                durations.add_metric([name], buckets, float(took["sum"]))
        yield from (family for family, _ in families)
        yield errors
        yield durations

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
            "headlined_journal_segments_set_aside_total",
            "Journal segments DuckDB refused three times, moved to journal/failed/ since start",
            value=float(journal.get("set_aside", 0)),
        )

    @staticmethod
    def _parquet(parquet: dict[str, Any] | None) -> Iterator[Metric]:
        if not parquet:
            return
        yield GaugeMetricFamily(
            "headlined_parquet_flush_failing",
            "1 while the last copy of new records to Parquet failed (they wait in DuckDB)",
            value=1.0 if parquet.get("flush_error") else 0.0,
        )
        last_flush = GaugeMetricFamily(
            "headlined_parquet_last_flush_timestamp_seconds",
            "When new records were last copied to Parquet (Unix time; none before the first)",
            labels=[],
        )
        if parquet.get("last_flush") is not None:
            last_flush.add_metric([], float(parquet["last_flush"]))
        yield last_flush
        yield CounterMetricFamily(
            "headlined_parquet_merges",
            "Closed days of a source whose flushes were merged into one file since start",
            value=float(parquet.get("days_merged", 0)),
        )
        yield CounterMetricFamily(
            "headlined_parquet_merge_failures",
            "Merges of a closed day that failed (the day stays as it was), since start",
            value=float(parquet.get("merge_failures", 0)),
        )

    @staticmethod
    def _export(export: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        chunks = GaugeMetricFamily(
            "headlined_export_chunks",
            "Export chunks of the database by state (pending, done, failed, damaged)",
            labels=["database", "state"],
        )
        # A gauge: a new run (headlined export) re-exports damaged chunks and counts anew.
        rows = GaugeMetricFamily(
            "headlined_export_rows",
            "Rows the database's exported chunks hold in Parquet",
            labels=["database"],
        )
        for database, figures in export.items():
            counts: dict[str, int] = dict.fromkeys(EXPORT_STATES, 0) | figures.get("chunks", {})
            for state, count in counts.items():
                chunks.add_metric([database, state], float(count))
            rows.add_metric([database], float(figures.get("rows", 0)))
        yield chunks
        yield rows

    @staticmethod
    def _lake(lake: dict[str, Any] | None) -> Iterator[Metric]:
        if not lake:
            return
        yield GaugeMetricFamily(
            "headlined_lake_failing",
            "1 while the lake's last publish failed as a whole (catalog or storage out)",
            value=1.0 if lake.get("error") else 0.0,
        )
        yield GaugeMetricFamily(
            "headlined_lake_table_errors",
            "Tables that refused a file in the last publish (status names them)",
            value=float(len(lake.get("table_errors") or {})),
        )
        waiting = lake.get("waiting")
        if waiting is not None:
            yield GaugeMetricFamily(
                "headlined_lake_files_waiting",
                "Local files not in the lake yet after the last publish",
                value=float(waiting),
            )
        yield CounterMetricFamily(
            "headlined_lake_files_added",
            "Lake files registered since the daemon started (each a copy of one local file "
            "or of a partition's flushes)",
            value=float(lake.get("added", 0)),
        )
        last = lake.get("last_success")
        if last is not None:
            yield GaugeMetricFamily(
                "headlined_lake_last_success_timestamp_seconds",
                "When the lake's last publish succeeded (Unix time)",
                value=float(last),
            )


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
