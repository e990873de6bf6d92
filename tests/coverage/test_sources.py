"""Coverage of polled sources: pauses, gaps, and the figures from a real state file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from headlined import store
from headlined.coverage import report, sources

S = 1_000_000_000
T0 = 1_730_419_200 * S  # 2024-11-01T00:00:00Z


def test_a_long_pause_is_not_polling_but_only_gaps_cost_coverage() -> None:
    facts = sources.SourceFacts(
        "quakes",
        points=1001,
        first_ns=T0,
        last_ns=T0 + 1000 * S,
        last_poll_ns=T0 + 1000 * S,
        last_interval_s=5.0,
        pauses=(sources.Stretch(T0 + 100 * S, T0 + 400 * S),),
        gaps=(sources.Gap(T0 + 300 * S, T0 + 400 * S, 17),),
    )
    got = sources.analyse(facts, now_ns=T0 + 1001 * S)
    assert got.not_polling == (sources.Stretch(T0 + 100 * S, T0 + 400 * S),)
    assert got.gaps == (sources.Gap(T0 + 300 * S, T0 + 400 * S, 17),)
    assert got.coverage == 0.9
    assert got.cadence_s == 1.0


def test_a_stopped_daemon_shows_as_not_polling_up_to_now() -> None:
    facts = sources.SourceFacts(
        "quakes", 10, T0, T0 + 9 * S, last_poll_ns=T0 + 10 * S, last_interval_s=2.0
    )
    assert sources.analyse(facts, now_ns=T0 + 20 * S).not_polling == ()  # 10 s: a restart
    stopped = sources.analyse(facts, now_ns=T0 + 3600 * S)
    assert stopped.not_polling == (sources.Stretch(T0 + 12 * S, T0 + 3600 * S),)


def test_since_and_until_clip_everything() -> None:
    facts = sources.SourceFacts(
        "quakes",
        points=100,
        first_ns=T0,
        last_ns=T0 + 1000 * S,
        gaps=(
            sources.Gap(T0 + 100 * S, T0 + 200 * S, None),
            sources.Gap(T0 + 800 * S, T0 + 900 * S, 3),
        ),
    )
    got = sources.analyse(facts, now_ns=T0 + 1000 * S, since_ns=T0 + 150 * S, until_ns=T0 + 650 * S)
    assert (got.first_ns, got.last_ns) == (T0 + 150 * S, T0 + 650 * S)
    assert got.gaps == (sources.Gap(T0 + 150 * S, T0 + 200 * S, None),)
    assert got.coverage == 0.9


def _state_file(tmp_path: Path) -> Path:
    path = tmp_path / "headlined.duckdb"
    conn = store.open_database(path)
    store.migrate(conn)
    ts = "to_timestamp(? / 1e9)"
    for i in range(100):  # a record every 10 s, keys r0..r99; r40..r59 were lost
        if 40 <= i < 60:
            continue
        conn.execute(
            f"INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
            f"VALUES ('quakes', ?, {ts}, '{{}}', {ts})",
            [f"r{i}", T0 + i * 10 * S, T0 + i * 10 * S + S],
        )
    polls = [0, 60, 120, 180, 240, 300, 360, 1200, 1260]  # a pause from 420 s (due) to 1200 s
    for at in polls:
        conn.execute(
            f"INSERT INTO fetch_summary (source, started_at, next_interval_s, gap) "
            f"VALUES ('quakes', {ts}, 60.0, ?)",
            [T0 + at * S, at == 1200],
        )
    conn.execute(f"INSERT INTO gaps VALUES ('quakes', {ts}, 'r39', 'r60', 20)", [T0 + 1200 * S])
    conn.close()
    return path


def test_facts_read_from_a_real_state_file(tmp_path: Path) -> None:
    conn = duckdb.connect()
    conn.execute(f"ATTACH '{_state_file(tmp_path)}' AS state (READ_ONLY)")
    conn.execute("USE state")

    def select(sql: str) -> list[list[Any]]:
        return [list(r) for r in conn.execute(sql).fetchall()]

    (got,) = sources.facts(select, ["quakes"])
    assert got.points == 80
    assert (got.first_ns, got.last_ns) == (T0, T0 + 990 * S)
    assert got.pauses == (sources.Stretch(T0 + 420 * S, T0 + 1200 * S),)
    # Between the records on either side of the hole: r39 at 390 s, r60 at 600 s.
    assert got.gaps == (sources.Gap(T0 + 390 * S, T0 + 600 * S, 20),)
    entry = report.source_entry(sources.analyse(got, now_ns=T0 + 1262 * S))
    assert entry["kind"] == "source"
    assert entry["first"] == "2024-11-01T00:00:00Z"
    assert [(m["start"], m["end"], m["cause"]) for m in entry["missing"]] == [
        ("2024-11-01T00:06:30Z", "2024-11-01T00:10:00Z", "gap"),
        ("2024-11-01T00:07:00Z", "2024-11-01T00:20:00Z", "not polling"),
    ]
    assert entry["missing"][0]["estimate"] == 20
    table = report.render_table([entry])
    assert "source quakes" in table.splitlines()[1]
    assert "~20 records" in table


def test_times_keep_their_nanoseconds() -> None:
    assert report.rfc3339(T0 + 1) == "2024-11-01T00:00:00.000000001Z"
    assert report.rfc3339(T0 + 500_000_000) == "2024-11-01T00:00:00.5Z"
    assert report.rfc3339(None) is None
