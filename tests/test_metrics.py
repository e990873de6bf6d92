"""The opt-in Prometheus endpoint of a running daemon, scraped for real."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headlined.demo.feed import DemoFeedServer, FeedSpec, Shape
from tests.support.daemon_process import Daemon, write_config

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_endpoint_has_per_source_series(tmp_path: Path) -> None:
    port = free_port()
    specs = [
        FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=1, t0=time.time() - 20),
        FeedSpec("beta", rate=1.0, shape=Shape.NO_TIME, seed=2, t0=time.time() - 20),
    ]
    with DemoFeedServer(specs) as server:
        config = write_config(
            tmp_path / "h.yaml", server, specs, metrics={"listen": f"127.0.0.1:{port}"}
        )
        daemon = Daemon(config)
        daemon.wait_started()
        time.sleep(2)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert daemon.stop() == 0
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    for source, least in (("alpha", 100), ("beta", 20)):
        labels = (("source", source),)
        assert samples[("headlined_polls_total", labels)] >= 1
        assert samples[("headlined_new_records_total", labels)] >= least
        assert samples[("headlined_records", labels)] >= least
        assert samples[("headlined_gaps", labels)] == 0
        assert samples[("headlined_poll_errors_total", labels)] == 0
        assert 1 <= samples[("headlined_poll_interval_seconds", labels)] <= 20
        assert 0 <= samples[("headlined_seconds_since_last_success", labels)] < 30
        assert samples[("headlined_window_records", labels)] == 200
    assert samples[("headlined_arrival_rate", (("source", "alpha"),))] == pytest.approx(5, rel=0.5)
    assert samples[("process_resident_memory_bytes", ())] > 10_000_000
    assert samples[("headlined_journal_waiting_polls", ())] >= 2  # applied every 60 s
    assert samples[("headlined_journal_segments_set_aside_total", ())] == 0
