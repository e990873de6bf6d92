"""Logging: journald priority prefixes, JSON lines, console output, secrets never shown."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from headlined import logs

SECRET = 'Bearer tok-"quoted"-Thai-ทดสอบ-123'


@pytest.fixture(autouse=True)
def _reset_redactor() -> Iterator[None]:
    yield
    logs.REDACTOR.set_secrets(())
    logs.configure("info", mode="json")


def test_journal_lines_carry_priority_prefix() -> None:
    out = io.StringIO()
    logs.configure("debug", stream=out, mode="journal")
    log = logs.get("test")
    log.debug("d")
    log.info("i")
    log.warning("w", source="a")
    log.error("e")
    lines = out.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    event = json.loads(lines[2][3:])
    assert event["event"] == "w"
    assert event["source"] == "a"
    assert event["level"] == "warning"
    assert event["component"] == "test"


def test_level_filters() -> None:
    out = io.StringIO()
    logs.configure("warning", stream=out, mode="json")
    logs.get().info("hidden")
    logging.getLogger("some.library").info("hidden too")
    logging.getLogger("some.library").warning("shown")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["shown"]
    assert lines[0]["logger"] == "some.library"


def test_console_mode_is_readable_not_json() -> None:
    out = io.StringIO()
    logs.configure("info", stream=out, mode="console")
    logs.get().info("poll_done", source="a", new=3)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert "poll_done" in text
    assert "new=3" in text
    assert not text.startswith("{")


def test_journal_detected_from_journal_stream(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logs.detect_mode(stream, env) == "journal"
        assert logs.detect_mode(stream, {"JOURNAL_STREAM": "1:2"}) == "json"
        assert logs.detect_mode(stream, {}) == "json"


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
@pytest.mark.parametrize("mode", ["journal", "json", "console"])
def test_secret_never_logged(level: str, mode: logs.Mode) -> None:
    out = io.StringIO()
    logs.configure(level, stream=out, mode=mode)
    logs.REDACTOR.set_secrets({SECRET, "tok-plain"})
    log = logs.get()
    headers = {"Authorization": SECRET}
    for method in (log.debug, log.info, log.warning, log.error):
        method("request", headers=headers, value=SECRET, note=f"x{SECRET}y")
    try:
        raise RuntimeError(f"server echoed {SECRET}")
    except RuntimeError as exc:
        log.error("failed", exc_info=exc)
    logging.getLogger("httpx").error("HTTP Request: GET http://x/?t=tok-plain")
    text = out.getvalue()
    assert text, "something was logged"
    assert "tok-" not in text
    assert "ทดสอบ" not in text
    assert json.dumps(SECRET) not in text


def test_secret_from_environment_never_reaches_daemon_output(tmp_path: Path) -> None:
    """End to end: a header secret from ${VAR}, a debug-level daemon, its whole output."""
    secret = "hdr-secret-4242"
    cfg = tmp_path / "h.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path / "state"}
log_level: debug
sources:
  - name: a
    url: http://127.0.0.1:9/feed
    headers:
      Authorization: "Bearer ${{FEED_TOKEN}}"
    key: [id]
""")
    env = dict(os.environ, FEED_TOKEN=secret)
    check = subprocess.run(
        [sys.executable, "-m", "headlined", "check-config", "-c", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "headlined", "run", "-c", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "started" in out
    assert secret not in out + err + check.stdout + check.stderr


def test_console_lines_start_with_the_time_and_can_go_around_a_progress_bar() -> None:
    out = io.StringIO()
    logs.configure("info", stream=out, mode="console")
    log = logs.get("test")
    log.info("first", n=1)
    seen: list[str] = []
    with logs.lines_through(lambda line, stream: seen.append(line)):
        log.warning("routed", n=2)
    log.info("after", n=3)
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in out.getvalue().splitlines()]
    assert len(plain) == 2
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in plain), plain
    assert "first" in plain[0]
    assert "after" in plain[1]
    assert len(seen) == 1
    assert "routed" in seen[0]


def test_convert_logs_like_every_other_command(tmp_path: Path) -> None:
    """No debug line at the default level, and no other layout than the JSON/console one."""
    source = tmp_path / "in.lp"
    source.write_text("m,t=a v=1 1704067200000000000\n")
    result = subprocess.run(
        [sys.executable, "-m", "headlined", "convert", str(source), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[debug" not in result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events
    assert all(e["level"] in ("info", "warning") for e in events)
