"""``headlined probe`` against real HTTP feeds on loopback: usable or not, and why."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

GOOD = {
    "data": [
        {"id": i, "created_at": f"2026-12-02T10:{i:02d}:00Z", "text": f"n{i}"} for i in range(50)
    ]
}
BODIES = {
    "/good": GOOD,
    "/shared-key": {"data": [{"station": "a", "v": i} for i in range(10)]},
    "/bad-time": {"data": [{"id": i, "created_at": "soon"} for i in range(10)]},
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(BODIES[self.path]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the probe's output, not the server's."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def source(name: str, url: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "url": url,
        "records": "data",
        "key": ["id"],
        "time": "created_at",
        "window": 50,
        **extra,
    }


def probe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headlined", "probe", "-c", str(tmp_path / "h.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_probe_says_which_sources_are_usable_and_why_not(tmp_path: Path, server: str) -> None:
    sources = [
        source("good", f"{server}/good"),
        source("closed", f"http://127.0.0.1:{closed_port()}/feed", timeout="2s"),
        source("wrong-path", f"{server}/good", records="result.items"),
        source("shared-key", f"{server}/shared-key", key=["station"], time=None, window=10),
        source("bad-time", f"{server}/bad-time", window=10),
    ]
    (tmp_path / "h.yaml").write_text(
        yaml.safe_dump({"state_dir": str(tmp_path / "state"), "sources": sources})
    )

    good = probe(tmp_path, "good")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("good: ok (HTTP 200 in ")
    assert ", 50 records) " in good.stdout
    assert "time: 2026-12-02T10:00:00+00:00 .. 2026-12-02T10:49:00+00:00" in good.stdout
    assert "problem" not in good.stdout
    assert not (tmp_path / "state").exists()  # nothing stored

    every = probe(tmp_path, "--json")
    assert every.returncode == 1
    found = {p["source"]: p for p in map(json.loads, every.stdout.splitlines())}
    assert set(found) == {"good", "closed", "wrong-path", "shared-key", "bad-time"}, every
    assert found["good"]["usable"] is True
    assert found["good"]["records"] == 50
    assert found["good"]["http_status"] == 200
    problems = {name: " | ".join(p["problems"]) for name, p in found.items()}
    assert problems["good"] == ""
    assert problems["closed"].startswith("fetch: connect: ")
    assert problems["wrong-path"] == (
        "records: 'result.items': no 'result' in the response (the body's top-level keys: data)"
    )
    assert problems["shared-key"].startswith("key: not unique: 9 records share their key")
    assert problems["bad-time"] == (
        "time: 'created_at' is \"soon\": neither ISO 8601 nor epoch seconds/ms/µs/ns"
    )

    text = probe(tmp_path)
    assert text.returncode == 1
    assert "closed: NOT USABLE (no response" in text.stdout
    assert text.stdout.count("  problem: ") == 4


def test_probe_of_an_unknown_source_is_a_usage_error(tmp_path: Path, server: str) -> None:
    (tmp_path / "h.yaml").write_text(
        yaml.safe_dump({"sources": [source("good", f"{server}/good")]})
    )
    result = probe(tmp_path, "nope")
    assert result.returncode == 2
    assert "no source named nope" in result.stderr
