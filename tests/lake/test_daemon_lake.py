"""The lake inside ``headlined run``: polled records reach the Iceberg table while polling
goes on; an unreachable warehouse is backed off from, shown in status, and caught up with."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from headlined import config
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from headlined.lake.catalog import open_catalog
from headlined.lake.publisher import Publisher, settings_from_config
from tests.support.daemon_process import Daemon, status, write_config
from tests.support.influxdb_server import free_ports
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Bucket, S3Server

pytestmark = pytest.mark.integration

MESSAGE_COLUMNS = "source, date, record_key, record_time, payload, first_seen, id"


@pytest.fixture
def feeds() -> Iterator[DemoFeedServer]:
    specs = [
        FeedSpec("alpha", rate=20.0, shape=Shape.DATA, seed=3, t0=time.time() - 60),
        FeedSpec("beta", rate=5.0, shape=Shape.RESULT_ITEMS, seed=4, t0=time.time() - 60),
    ]
    with DemoFeedServer(specs) as server:
        yield server


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``check()`` once it is truthy; fails after ``timeout`` seconds with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def lake_rows(cfg: config.Config) -> list[tuple[Any, ...]]:
    """Every row of headlined.messages, as pyiceberg reads the current snapshot."""
    settings = settings_from_config(cfg)
    catalog = open_catalog(settings.catalog_url, settings.warehouse, settings.s3)
    arrow = catalog.load_table(("headlined", "messages")).scan().to_arrow()
    conn = duckdb.connect()
    try:
        conn.register("lake", arrow)
        return conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM lake ORDER BY source, id").fetchall()
    finally:
        conn.close()


def local_rows(parquet_dir: Path) -> list[tuple[Any, ...]]:
    """Every row of the local messages Parquet, as the lake's columns."""
    conn = duckdb.connect()
    try:
        return conn.execute(
            f"""SELECT source, date::DATE AS date, record_key, record_time, payload::VARCHAR,
                       first_seen, id
                FROM read_parquet('{parquet_dir}/messages/**/*.parquet',
                                  hive_partitioning = true, hive_types_autocast = false)
                ORDER BY source, id"""
        ).fetchall()
    finally:
        conn.close()


def published_times(daemon: Daemon, times: int) -> bool:
    """Whether ``daemon`` logged at least ``times`` publishes."""
    return len(daemon.events("lake_published")) >= times


def records(path: Path) -> int:
    """Records stored so far, as the running daemon's status counts them."""
    return sum(int(source["records"]) for source in status(path)["sources"].values())


def two_feeds(tmp_path: Path, feeds: DemoFeedServer, **lake: str) -> Path:
    """A config polling two feeds, flushing every second, the lake in a local warehouse."""
    return write_config(
        tmp_path / "headlined.yaml",
        feeds,
        [FeedSpec("alpha", rate=20.0), FeedSpec("beta", rate=5.0, shape=Shape.RESULT_ITEMS)],
        flush_interval="1s",
        lake={"warehouse": str(tmp_path / "warehouse"), "interval": "1s", **lake},
    )


def status_text(path: Path) -> str:
    """What ``headlined status`` prints, daemon or not."""
    return subprocess.run(
        [sys.executable, "-m", "headlined", "status", "-c", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def lake_of(document: dict[str, Any]) -> dict[str, Any]:
    lake: dict[str, Any] = document.get("lake") or {}
    return lake


def test_polled_records_reach_the_lake_while_polling_and_status_shows_it(
    tmp_path: Path, feeds: DemoFeedServer
) -> None:
    path = two_feeds(tmp_path, feeds, site="site-a")
    daemon = Daemon(path)
    daemon.wait_started()
    published = wait_for(
        "the daemon to publish messages to the lake",
        lambda: (
            (lake := lake_of(status(path))).get("added", 0) > 0
            and "headlined.messages" in lake.get("snapshots", {})
            and lake
        ),
    )
    assert published["site"] == "site-a"
    assert published["error"] is None
    assert published["warehouse"] == str(tmp_path / "warehouse")
    # Polling went on meanwhile: records keep arriving in DuckDB.
    before = records(path)
    wait_for("more records", lambda: records(path) > before)
    assert daemon.stop() == 0
    assert daemon.events("lake_published")
    assert not daemon.events("components_did_not_stop")

    # Without the daemon, status shows what it left.
    shown = status_text(path)
    assert "lake: ok: 1 tables" in shown
    assert "site site-a" in shown

    # What the stop's last flush wrote is published by the next cycle (the daemon's code,
    # run here once); then the table holds exactly the local files' rows.
    cfg = config.load(path).config
    publisher = Publisher(settings_from_config(cfg))
    try:
        publisher.cycle()
        assert publisher.cycle().added == 0  # nothing twice
    finally:
        publisher.close()
    local = local_rows(tmp_path / "pq")
    assert len(local) > 0
    assert lake_rows(cfg) == local


def test_an_unreachable_warehouse_is_retried_while_polling_goes_on(
    tmp_path: Path, feeds: DemoFeedServer
) -> None:
    (port,) = free_ports(1)
    path = write_config(
        tmp_path / "headlined.yaml",
        feeds,
        [FeedSpec("alpha", rate=20.0)],
        flush_interval="1s",
        lake={
            "warehouse": "s3://lake/site-a",
            "interval": "1s",
            "s3": {
                "endpoint": f"http://127.0.0.1:{port}",
                "region": REGION,
                "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_ACCESS_KEY,
            },
        },
    )
    daemon = Daemon(path)
    daemon.wait_started()
    failing = wait_for(
        "status to show the lake failing", lambda: lake_of(status(path)).get("error")
    )
    assert "s3://lake/site-a" in failing  # where it could not publish
    stored = records(path)
    wait_for("polling to go on", lambda: records(path) > stored)
    assert "FAILING" in status_text(path)

    with S3Server(tmp_path / "moto.log", port=port) as s3:
        s3.create_bucket("lake")
        caught_up = wait_for(
            "the lake to catch up once S3 answers",
            lambda: (
                (lake := lake_of(status(path))).get("error") is None
                and lake.get("added", 0) > 0
                and lake
            ),
            timeout=120,
        )
        assert "headlined.messages" in caught_up["snapshots"]
        assert daemon.stop() == 0
    output = daemon.output()
    assert len(daemon.events("lake_publish_failed")) >= 1
    assert daemon.events("lake_publish_recovered")
    assert SECRET_ACCESS_KEY not in output


def test_kill_9_of_the_daemon_while_publishing_loses_and_doubles_nothing(
    tmp_path: Path, feeds: DemoFeedServer
) -> None:
    path = two_feeds(tmp_path, feeds)
    seed = int(os.environ.get("LAKE_KILL_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)  # noqa: S311  reproducible timing, not security
    print(f"LAKE_KILL_SEED={seed}")  # shown when it fails: the same kills again
    for _ in range(3):
        daemon = Daemon(path)
        daemon.wait_started()
        wait_for("a publish", functools.partial(daemon.events, "lake_published"))
        time.sleep(rng.uniform(0.0, 2.0))  # somewhere in a flush, a copy or a commit
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    cfg = config.load(path).config
    publisher = Publisher(settings_from_config(cfg))
    try:
        publisher.cycle()
    finally:
        publisher.close()
    published = lake_rows(cfg)
    assert len({row[-1] for row in published}) == len(published)  # no id twice
    assert published == local_rows(tmp_path / "pq")


def test_two_daemons_publish_at_once_to_one_postgres_catalog_and_bucket(
    tmp_path: Path, feeds: DemoFeedServer, postgres_url: str, s3_bucket: S3Bucket
) -> None:
    lake = {
        "catalog": postgres_url,
        "warehouse": f"s3://{s3_bucket.bucket}/lake",
        "interval": "1s",
        "s3": {
            "endpoint": s3_bucket.endpoint,
            "region": s3_bucket.region,
            "access_key_id": s3_bucket.access_key_id,
            "secret_access_key": s3_bucket.secret_access_key,
        },
    }
    sites = {
        "north": FeedSpec("alpha", rate=20.0),
        "south": FeedSpec("beta", rate=5.0, shape=Shape.RESULT_ITEMS),
    }
    paths = {}
    for site, spec in sites.items():
        (tmp_path / site).mkdir()
        paths[site] = write_config(
            tmp_path / site / "headlined.yaml",
            feeds,
            [spec],
            flush_interval="1s",
            lake={**lake, "site": site},
        )
    daemons = [Daemon(path) for path in paths.values()]
    for daemon in daemons:
        daemon.wait_started()
    for daemon in daemons:  # each committed several times while the other did too
        wait_for("three publishes", functools.partial(published_times, daemon, 3))
    for daemon in daemons:
        assert daemon.stop() == 0
        assert not daemon.events("lake_publish_failed")
        assert not daemon.events("lake_table_failed")
    expected: list[tuple[Any, ...]] = []
    for site, path in paths.items():
        cfg = config.load(path).config
        publisher = Publisher(settings_from_config(cfg))
        try:
            publisher.cycle()  # what each one's stop flushed
        finally:
            publisher.close()
        expected += local_rows(tmp_path / site / "pq")
    published = lake_rows(config.load(paths["north"]).config)
    assert {row[0] for row in published} == {"alpha", "beta"}
    assert published == sorted(expected, key=lambda row: (row[0], row[-1]))
