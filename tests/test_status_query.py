"""``status`` and ``query`` while the daemon holds the DuckDB file, and after it stopped."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headlined.demo.feed import DemoFeedServer, FeedSpec, Shape
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
