"""``status`` and ``query`` while the daemon holds the DuckDB file, and after it stopped."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from tests.support.daemon_process import Daemon, write_config

pytestmark = pytest.mark.integration


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headlined", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_and_query_while_running_and_after(tmp_path: Path) -> None:
    specs = [
        FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=1, t0=time.time() - 10),
        FeedSpec("beta", rate=1.0, shape=Shape.RESULT_ITEMS, seed=2, t0=time.time() - 10),
    ]
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs)
        daemon = Daemon(config)
        daemon.wait_started()
        time.sleep(3)

        status = cli(config, "status")
        assert status.returncode == 0, status.stderr
        assert "running (pid" in status.stdout
        assert "alpha" in status.stdout
        assert "beta" in status.stdout
        assert "polls committed and waiting for DuckDB" in status.stdout
        lines = status.stdout.splitlines()
        header = next(line for line in lines if line.startswith("SOURCE"))
        alpha = next(line for line in lines if line.startswith("alpha"))
        columns = dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", alpha), strict=True))
        assert columns["WINDOW"] == "200"

        document = json.loads(cli(config, "status", "--json").stdout)
        assert set(document["sources"]) == {"alpha", "beta"}
        assert document["sources"]["alpha"]["records"] > 0
        assert document["daemon"]["unhealthy"] == []

        counts = cli(
            config,
            "query",
            "--json",
            "select source, count(*) as n from messages group by 1 order by 1",
        )
        assert counts.returncode == 0, counts.stderr
        rows = [json.loads(line) for line in counts.stdout.splitlines()]
        assert [r["source"] for r in rows] == ["alpha", "beta"]
        alpha_running = rows[0]["n"]
        assert alpha_running >= 50  # 10 s of prefill at 5/s, committed within a second

        refused = cli(config, "query", "delete from messages")
        assert refused.returncode == 1
        assert "only SELECT" in refused.stderr

        bad = cli(config, "query", "select * from nowhere")
        assert bad.returncode == 1
        assert "nowhere" in bad.stderr

        assert daemon.stop() == 0

    offline = cli(config, "status")
    assert offline.returncode == 0
    assert "not running" in offline.stdout
    after = cli(config, "query", "--csv", "select count(*) from messages where source = 'alpha'")
    assert after.returncode == 0, after.stderr
    assert int(after.stdout.splitlines()[1]) >= alpha_running


def test_after_a_crash_query_says_what_the_journal_holds_until_the_next_start(
    tmp_path: Path,
) -> None:
    specs = [FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=3, t0=time.time() - 10)]
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs)
        daemon = Daemon(config)
        daemon.wait_started()
        time.sleep(2)
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        count = "select count(*) from messages"
        crashed = cli(config, "query", "--csv", count)
        assert crashed.returncode == 0, crashed.stderr
        assert "journal segment(s)" in crashed.stderr
        assert "applies them when it next starts" in crashed.stderr
        assert int(crashed.stdout.splitlines()[1]) == 0  # committed, but only in the journal

        again = Daemon(config)
        again.wait_started()
        assert again.stop() == 0
    after = cli(config, "query", "--csv", count)
    assert after.returncode == 0, after.stderr
    assert "journal" not in after.stderr
    assert int(after.stdout.splitlines()[1]) >= 50  # the 10 s of prefill, at least


@contextlib.contextmanager
def daemon_polling_alpha(tmp_path: Path, seed: int) -> Iterator[tuple[Path, Daemon]]:
    """A daemon polling one demo feed (ten seconds of history), started; its config."""
    specs = [FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=seed, t0=time.time() - 10)]
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs)
        daemon = Daemon(config)
        daemon.wait_started()
        yield config, daemon


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_many_requests_add_no_warning_and_a_huge_query_leaves_the_daemon_small(
    tmp_path: Path,
) -> None:
    """100 status/query calls log nothing at warning level; a query of 300,000 rows of 1 KB
    is cut with a note saying why, and the daemon's RSS stays within 50 MB of where it was."""
    with daemon_polling_alpha(tmp_path, seed=4) as (config, daemon):
        for n in range(50):
            assert cli(config, "status", "--json").returncode == 0
            assert cli(config, "query", "--csv", f"select {n}").returncode == 0
        time.sleep(1)
        loud = [
            line
            for line in daemon.output().splitlines()
            if '"level": "warning"' in line or '"level": "error"' in line
        ]
        assert loud == []

        before = rss_mib(daemon.proc.pid)
        huge = cli(config, "query", "--csv", "select i, repeat('x', 1000) from range(300000) t(i)")
        assert huge.returncode == 0, huge.stderr
        assert "the result was cut at 16 MiB" in huge.stderr
        assert 10_000 < len(huge.stdout.splitlines()) < 300_000
        time.sleep(5)
        after = rss_mib(daemon.proc.pid)
        assert after - before < 50, (before, after)
        assert daemon.stop() == 0


def test_json_output_keeps_json_values_and_a_table_keeps_one_line_per_row(tmp_path: Path) -> None:
    with daemon_polling_alpha(tmp_path, seed=5) as (config, daemon):
        time.sleep(2)
        rows = cli(config, "query", "--json", "select payload from messages limit 1")
        assert rows.returncode == 0, rows.stderr
        payload = json.loads(rows.stdout.splitlines()[0])["payload"]
        assert isinstance(payload, dict)  # an object, not a string holding JSON
        table = cli(config, "query", "select 'a' || chr(10) || 'b' as two_lines, 1 as n")
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines() == ["two_lines  n", "a\\nb       1", "(1 row)"]
        assert daemon.stop() == 0


def test_ctrl_c_stops_a_long_query_without_a_traceback(tmp_path: Path) -> None:
    with daemon_polling_alpha(tmp_path, seed=6) as (config, daemon):
        assert daemon.stop() == 0  # a state file, and no daemon: the query runs here
    endless = "select count(*) from range(100000000000) t(i)"
    query = subprocess.Popen(
        [sys.executable, "-m", "headlined", "query", "-c", str(config), endless],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    query.send_signal(signal.SIGINT)
    _, err = query.communicate(timeout=60)
    assert query.returncode == 130
    assert "Traceback" not in err
