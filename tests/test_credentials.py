"""A token from $CREDENTIALS_DIRECTORY (systemd LoadCredential=) reaches the API, never the logs."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from tests.support.daemon_process import Daemon

pytestmark = pytest.mark.integration

TOKEN = "cred-7f3a9c1e-secret"


class Recorder(BaseHTTPRequestHandler):
    """A rolling-window API that remembers the Authorization header of every request."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"data": [{"id": 1}, {"id": 2}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/feed"
    server.shutdown()
    server.server_close()
    thread.join()


def test_credential_reaches_request_headers_and_never_the_logs(tmp_path: Path, api: str) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "FEED_TOKEN").write_text(TOKEN + "\n")
    config = tmp_path / "headlined.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "log_level": "debug",
                "sources": [
                    {
                        "name": "api",
                        "url": api,
                        "records": "data",
                        "key": ["id"],
                        "headers": {"Authorization": "Bearer ${FEED_TOKEN}"},
                        "min_interval": "1s",
                        "max_interval": "2s",
                    }
                ],
            }
        )
    )
    Recorder.seen = []
    env = {k: v for k, v in os.environ.items() if k != "FEED_TOKEN"}
    env["CREDENTIALS_DIRECTORY"] = str(creds)
    daemon = Daemon(config, env=env)
    daemon.wait_started()
    time.sleep(2.5)
    assert daemon.stop() == 0
    assert Recorder.seen, "the API was polled"
    assert set(Recorder.seen) == {f"Bearer {TOKEN}"}
    assert TOKEN not in daemon.output()
    assert "polled" in daemon.output()  # debug events were logged, just scrubbed
