"""The opt-in Prometheus endpoint of a running daemon, scraped for real, checked by promtool."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from headlined import __version__
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape, source_fragment
from headlined.influx.exporter import Progress
from headlined.metrics import MetricsServer
from headlined.poll.poller import DURATION_BUCKETS_S
from tests.support.daemon_process import Daemon, write_config

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).parent.parent / "etc" / "prometheus" / "headlined-alerts.yml"
SOURCES = ("alpha", "beta", "gone")  # gone: a URL the feed server answers with 404
# Every headlined_* family: its type and label names. Counters are named without _total here,
# as the parser names the family; their samples carry it.
FAMILIES = {
    "headlined_build_info": ("gauge", {"version", "python"}),
    "headlined_polls": ("counter", {"source"}),
    "headlined_new_records": ("counter", {"source"}),
    "headlined_gaps": ("counter", {"source"}),
    "headlined_poll_errors": ("counter", {"source", "error_type", "status"}),
    "headlined_poll_duration_seconds": ("histogram", {"source"}),
    "headlined_records": ("gauge", {"source"}),
    "headlined_poll_interval_seconds": ("gauge", {"source"}),
    "headlined_arrival_rate_records_per_second": ("gauge", {"source"}),
    "headlined_window_records": ("gauge", {"source"}),
    "headlined_last_success_timestamp_seconds": ("gauge", {"source"}),
    "headlined_journal_waiting_polls": ("gauge", set()),
    "headlined_journal_segments_set_aside": ("counter", set()),
    "headlined_parquet_flush_failing": ("gauge", set()),
    "headlined_parquet_last_flush_timestamp_seconds": ("gauge", set()),
    "headlined_parquet_merges": ("counter", set()),
    "headlined_parquet_merge_failures": ("counter", set()),
    "headlined_export_chunks": ("gauge", {"database", "state"}),
    "headlined_export_rows": ("gauge", {"database"}),
    "headlined_lake_failing": ("gauge", set()),
    "headlined_lake_table_errors": ("gauge", set()),
    "headlined_lake_files_waiting": ("gauge", set()),
    "headlined_lake_files_added": ("counter", set()),
    "headlined_lake_last_success_timestamp_seconds": ("gauge", set()),
}
# What the conftest keeps out of each test's environment; this module's daemon starts before.
SYSTEMD_ENV = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "CREDENTIALS_DIRECTORY",
    "HEADLINED_CONFIG",
)


@dataclass(frozen=True)
class Scrape:
    """The text of one scrape, parsed."""

    text: str
    families: dict[str, Metric]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """Parse the text exposition format."""
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in families.values()
            for s in family.samples
        }
        return cls(text, families, samples)

    def has(self, name: str, **labels: str) -> bool:
        """Whether there is a sample ``name`` with exactly ``labels``."""
        return (name, frozenset(labels.items())) in self.samples

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels`` (a test fails without it)."""
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no {name}{labels} in the scrape:\n{self.text}"
        return self.samples[key]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape_until(url: str, ready: Callable[[Scrape], bool], timeout: float = 30) -> Scrape:
    """Scrape ``url`` until ``ready`` says the figures are there."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = Scrape.parse(httpx.get(url, timeout=10).text)
        if ready(scrape):
            return scrape
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout:g}s:\n{scrape.text}")
        time.sleep(0.2)


def polled(scrape: Scrape) -> bool:
    """Every source polled once, alpha and beta successfully, and the lake published once."""
    return (
        all(scrape.has("headlined_polls_total", source=s) for s in SOURCES)
        and all(
            scrape.has("headlined_last_success_timestamp_seconds", source=s)
            for s in ("alpha", "beta")
        )
        and scrape.has("headlined_lake_last_success_timestamp_seconds")
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    """One scrape of a daemon polling two demo feeds and a source that answers 404."""
    tmp_path = tmp_path_factory.mktemp("metrics")
    port = free_port()
    specs = [
        FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=1, t0=time.time() - 20),
        FeedSpec("beta", rate=1.0, shape=Shape.NO_TIME, seed=2, t0=time.time() - 20),
    ]
    with DemoFeedServer(specs) as server:
        config = write_config(
            tmp_path / "h.yaml",
            server,
            specs,
            metrics={"listen": f"127.0.0.1:{port}"},
            lake={"warehouse": str(tmp_path / "warehouse"), "interval": "1s"},
        )
        document = yaml.safe_load(config.read_text())
        document["sources"].append(
            {
                "name": "gone",
                "url": f"{server.base_url}/feeds/gone",
                **source_fragment(Shape.DATA),
                "min_interval": "1s",
                "max_interval": "20s",
            }
        )
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        daemon = Daemon(config, env=env)
        try:
            daemon.wait_started()
            scrape = scrape_until(f"http://127.0.0.1:{port}/metrics", polled)
        finally:
            code = daemon.stop()
    assert code == 0, daemon.output()
    return scrape


def require_promtool() -> str:
    """promtool's path. Missing, it fails the test under CI (CI=true), where a skip would hide
    a broken install step, and skips it elsewhere (see influxdb_server.require_binary)."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found on PATH; install Debian's prometheus (scripts/test does)"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_every_family_has_its_type_labels_and_help(live: Scrape) -> None:
    ours = {name: f for name, f in live.families.items() if name.startswith("headlined_")}
    assert set(ours) == set(FAMILIES)
    for name, family in ours.items():
        kind, labels = FAMILIES[name]
        assert family.type == kind, name
        assert family.documentation, name
        for sample in family.samples:
            bucket = kind == "histogram" and sample.name.endswith("_bucket")
            assert set(sample.labels) == labels | ({"le"} if bucket else set()), sample
            if kind == "counter":
                assert sample.name == f"{name}_total", sample
    assert live.value("process_resident_memory_bytes") > 10_000_000


def test_per_source_figures(live: Scrape) -> None:
    now = time.time()
    for source, least in (("alpha", 100), ("beta", 20)):
        assert live.value("headlined_polls_total", source=source) >= 1
        assert live.value("headlined_new_records_total", source=source) >= least
        assert live.value("headlined_records", source=source) >= least
        assert live.value("headlined_gaps_total", source=source) == 0
        assert 1 <= live.value("headlined_poll_interval_seconds", source=source) <= 20
        last = live.value("headlined_last_success_timestamp_seconds", source=source)
        assert now - 60 < last <= now
        assert live.value("headlined_window_records", source=source) == 200
    rate = live.value("headlined_arrival_rate_records_per_second", source="alpha")
    assert rate == pytest.approx(5, rel=0.5)
    assert not live.has("headlined_last_success_timestamp_seconds", source="gone")
    assert live.value("headlined_journal_waiting_polls") >= 3  # applied every 60 s
    assert live.value("headlined_journal_segments_set_aside_total") == 0
    (info,) = live.families["headlined_build_info"].samples
    assert info.labels["version"] == __version__
    assert info.labels["python"] == platform.python_version()
    assert info.value == 1


def test_poll_errors_carry_error_type_and_status(live: Scrape) -> None:
    errors = {
        (s.labels["source"], s.labels["error_type"], s.labels["status"]): s.value
        for s in live.families["headlined_poll_errors"].samples
    }
    # Every poll of gone failed with the 404; no poll of the feeds failed.
    assert set(errors) == {("gone", "http_4xx", "404")}
    assert errors["gone", "http_4xx", "404"] >= 1


def test_poll_duration_histogram_counts_every_poll(live: Scrape) -> None:
    for source in SOURCES:
        buckets = [
            (s.labels["le"], s.value)
            for s in live.families["headlined_poll_duration_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["source"] == source
        ]
        assert [float(le) for le, _ in buckets] == [*DURATION_BUCKETS_S, float("inf")]
        counts = [n for _, n in buckets]
        assert counts == sorted(counts)  # cumulative
        count = live.value("headlined_poll_duration_seconds_count", source=source)
        assert count == counts[-1]
        # A poll and its duration are counted a moment apart: a scrape can fall in between.
        assert abs(live.value("headlined_polls_total", source=source) - count) <= 1
        assert 0 < live.value("headlined_poll_duration_seconds_sum", source=source) < 30 * count


def test_promtool_check_metrics_accepts_a_live_scrape(live: Scrape) -> None:
    result = subprocess.run(
        [require_promtool(), "check", "metrics"],
        input=live.text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_promtool_check_rules_accepts_the_alerts() -> None:
    result = subprocess.run(
        [require_promtool(), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_alerts_use_only_exposed_metrics(live: Scrape) -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    exprs = {rule["alert"]: rule["expr"] for rule in rules}
    assert exprs == {
        "HeadlinedGap": "increase(headlined_gaps_total[1h]) > 0",
        "HeadlinedSourceStale": "time() - headlined_last_success_timestamp_seconds > 600",
        "HeadlinedSourceNeverSucceeded": (
            "(headlined_polls_total > 0) unless on(source) headlined_last_success_timestamp_seconds"
        ),
        "HeadlinedExportChunks": 'headlined_export_chunks{state=~"failed|damaged"} > 0',
        "HeadlinedJournalSegmentSetAside": (
            "increase(headlined_journal_segments_set_aside_total[1h]) > 0"
        ),
        "HeadlinedLakeFailing": "headlined_lake_failing > 0",
        "HeadlinedLakeTableErrors": "headlined_lake_table_errors > 0",
        "HeadlinedParquetFlushFailing": "headlined_parquet_flush_failing > 0",
    }
    exposed = {name for name, _ in live.samples} | set(live.families)
    for expr in exprs.values():
        for name in re.findall(r"headlined_\w+", expr):
            assert name in exposed, name


def test_parquet_figures(live: Scrape) -> None:
    assert live.value("headlined_parquet_flush_failing") == 0
    # Scraped before the first flush (flush_interval 60 s): no time yet, not a made-up one.
    assert not live.has("headlined_parquet_last_flush_timestamp_seconds")
    assert live.value("headlined_parquet_merges_total") == 0
    assert live.value("headlined_parquet_merge_failures_total") == 0


def test_lake_figures(live: Scrape) -> None:
    assert live.value("headlined_lake_failing") == 0
    assert live.value("headlined_lake_table_errors") == 0
    assert live.has("headlined_lake_files_added_total")
    assert live.value("headlined_lake_last_success_timestamp_seconds") > time.time() - 600
    assert live.has("headlined_lake_files_waiting")


def test_export_chunks_by_state_include_damaged() -> None:
    progress = Progress(total=4)
    for _ in range(4):
        progress.count("telegraf", "pending")
    progress.finished("telegraf", "done", lines=10, rows=8)
    progress.finished("telegraf", "damaged", lines=5, rows=3)
    progress.move("telegraf", "failed")
    server = MetricsServer(f"127.0.0.1:{free_port()}", lambda: {"export": progress.snapshot()})
    server.start()
    try:
        scrape = Scrape.parse(
            httpx.get(f"http://{server.host}:{server.port}/metrics", timeout=10).text
        )
    finally:
        server.stop()
    chunks = {
        s.labels["state"]: s.value
        for s in scrape.families["headlined_export_chunks"].samples
        if s.labels["database"] == "telegraf"
    }
    assert chunks == {"pending": 1, "done": 1, "failed": 1, "damaged": 1}
    assert scrape.value("headlined_export_rows", database="telegraf") == 11


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_missing_promtool_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="promtool not found"):
        require_promtool()
