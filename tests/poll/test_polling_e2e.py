"""The real daemon against real HTTP feeds on 127.0.0.1: nothing lost, loss proven when it is."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from headlined import control
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from tests.support.daemon_process import (
    Daemon,
    committed_keys,
    first_answers,
    lost_records,
    query,
    stored_keys,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEVEN = [
    FeedSpec("fast", rate=20.0, shape=Shape.DATA, seed=11),
    FeedSpec("errors", rate=5.0, shape=Shape.RESULT_ITEMS, error_rate=0.05, seed=12),
    FeedSpec(
        "bursty", rate=1.0, shape=Shape.BARE_LIST, burst=(20.0, 150), seed=13, order="oldest_first"
    ),
    FeedSpec("trickle", rate=0.1, shape=Shape.NO_TIME, seed=14),
    FeedSpec("slow", rate=10.0, shape=Shape.DATA, slow_rate=0.1, slow_s=1.5, seed=15),
    FeedSpec(
        "mixed",
        rate=2.0,
        shape=Shape.RESULT_ITEMS,
        burst=(30.0, 150),
        error_rate=0.05,
        slow_rate=0.05,
        seed=16,
    ),
    FeedSpec("untimed", rate=3.0, shape=Shape.NO_TIME, order="oldest_first", seed=17),
]


def at(specs: list[FeedSpec], t0: float) -> list[FeedSpec]:
    return [FeedSpec(**{**s.__dict__, "t0": t0}) for s in specs]


def test_seven_feeds_for_a_minute_lose_nothing(tmp_path: Path) -> None:
    specs = at(SEVEN, time.time() - 30)
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs)
        # An eighth source that only ever answers 404: it must not disturb the seven.
        document = yaml.safe_load(config.read_text())
        document["sources"].append(
            {
                "name": "broken",
                "url": f"{server.base_url}/feeds/no-such-feed",
                "records": "data",
                "key": ["id"],
                "min_interval": "1s",
                "max_interval": "4s",
            }
        )
        config.write_text(yaml.safe_dump(document))
        daemon = Daemon(config)
        daemon.wait_started()
        time.sleep(60)
        stopped_at = time.time()
        assert daemon.stop() == 0, daemon.output()
        stored = stored_keys(tmp_path / "state")
        started_at = first_answers(tmp_path / "state")
        for spec in specs:
            keys = stored.get(spec.name, [])
            assert len(keys) == len(set(keys)), f"{spec.name}: duplicates"
            lost = lost_records(server, spec, keys, started_at[spec.name], stopped_at - 1)
            assert lost == [], spec.name
            assert server.request_count(spec.name) > 1
        assert query(tmp_path / "state", "SELECT count(*) FROM gaps") == [(0,)]
        assert not daemon.events("gap_detected")
        broken = query(
            tmp_path / "state",
            "SELECT count(*), min(http_status), "
            "min(error) FROM fetch_summary WHERE source = 'broken'",
        )
        assert broken[0][0] >= 3
        assert broken[0][1] == 404
        assert broken[0][2].startswith("http_4xx")
        assert len([e for e in daemon.events("poll_failed") if e["source"] == "broken"]) == 1
        assert list((tmp_path / "state" / "rejected" / "broken").glob("*.txt"))
        errors = query(
            tmp_path / "state",
            "SELECT count(*) FROM fetch_summary WHERE error IS NOT NULL AND source <> 'broken'",
        )
        # 5% errors are retried within the poll: they rarely exhaust the retries.
        assert errors[0][0] <= 2


def test_too_fast_feed_reports_gaps_with_estimates(tmp_path: Path) -> None:
    # window 200 at 400 records/s turns over in 0.5 s; min_interval is 1 s.
    specs = at(
        [FeedSpec("flood", rate=400.0, shape=Shape.DATA, seed=21, jitter=0)], time.time() - 5
    )
    with DemoFeedServer(specs) as server:
        daemon = Daemon(write_config(tmp_path / "h.yaml", server, specs))
        daemon.wait_started()
        time.sleep(8)
        assert daemon.stop() == 0
    rows = query(
        tmp_path / "state",
        "SELECT last_seen_key::JSON->>0, first_new_key::JSON->>0, est_missing "
        "FROM gaps ORDER BY detected_at",
    )
    assert len(rows) >= 3
    for last, first, est in rows:
        true_missing = int(first) - int(last) - 1
        assert true_missing > 0
        assert est == pytest.approx(true_missing, rel=0.25)
    assert len(daemon.events("gap_detected")) == len(rows)


def test_kill_9_and_restart_loses_nothing_committed(tmp_path: Path) -> None:
    specs = at(
        [
            FeedSpec("fast", rate=20.0, shape=Shape.DATA, seed=31),
            FeedSpec("steady", rate=2.0, shape=Shape.RESULT_ITEMS, seed=32),
        ],
        time.time() - 5,
    )
    state = tmp_path / "state"
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs)
        first = Daemon(config)
        first.wait_started()
        time.sleep(8)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        before = committed_keys(state)
        assert before.get("fast"), "the first run committed records"
        time.sleep(15)  # down longer than the fast feed's 10 s window: real loss
        second = Daemon(config)
        second.wait_started()
        time.sleep(8)
        assert second.stop() == 0
        after = stored_keys(state)
    for source, keys in before.items():
        assert set(keys) <= set(after[source]), f"{source}: committed records vanished"
    for stored in after.values():
        assert len(stored) == len(set(stored))
    gaps = query(state, "SELECT source, est_missing FROM gaps")
    assert [g[0] for g in gaps] == ["fast"], "downtime loss of the fast feed is reported"
    assert gaps[0][1] is not None
    assert gaps[0][1] > 20 * 15 - 200 - 40


def test_kill_9_while_the_journal_is_being_applied_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """Queries make the daemon apply its journal to DuckDB each time; killed among them,
    three times over, it must neither lose a committed poll nor apply one twice.

    (The narrowest case, killed between an application's COMMIT and the segment's deletion,
    is rarely hit here: test_pollwriter builds it on purpose.)"""
    specs = at([FeedSpec("fast", rate=20.0, shape=Shape.DATA, seed=41)], time.time() - 5)
    state = tmp_path / "state"
    sock = control.socket_path(state)
    rng = random.Random(7)  # noqa: S311  when to kill, not a secret
    committed: set[str] = set()
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs)
        for _ in range(3):
            daemon = Daemon(config)
            daemon.wait_started()
            deadline = time.monotonic() + rng.uniform(2.0, 4.0)
            while time.monotonic() < deadline:
                control.request(sock, {"cmd": "query", "sql": "SELECT count(*) FROM messages"})
            assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
            committed |= committed_keys(state).get("fast", set())
        last = Daemon(config)
        last.wait_started()
        assert last.stop() == 0
    after = stored_keys(state)["fast"]
    assert committed <= set(after), "committed records vanished"
    assert len(after) == len(set(after))
    doubled = query(
        state,
        "SELECT count(*) - count(DISTINCT (source, started_at)) FROM fetch_summary",
    )
    assert doubled == [(0,)], "a journal segment was applied twice"
