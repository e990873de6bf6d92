"""A throwaway S3-compatible server for tests: moto's server on loopback.

moto is an emulator of the S3 API (in memory, no durability, any credentials accepted), not
a real object store; it is what runs here without downloading a server at run time. It runs
in a process of its own (`python -m moto.server`), so a test can kill -9 the processes that
talk to it without killing it, and several processes see the same buckets.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.influxdb_server import free_ports
from tests.support.processes import terminate

REGION = "us-east-1"
ACCESS_KEY_ID = "test-access-key"
# A fake secret, on purpose: a test can check it never reaches a log or an error message.
SECRET_ACCESS_KEY = "s3-test-secret-4c2e"


class S3Error(RuntimeError):
    """The S3 emulator failed to start or refused a request."""


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on the emulator and how to reach it."""

    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    region: str = REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY

    def pyarrow_filesystem(self, *, allow_bucket_creation: bool = False) -> Any:
        """pyarrow's S3FileSystem bound to the emulator (path-style requests, plain HTTP)."""
        from pyarrow import fs  # noqa: PLC0415  pyarrow is heavy; only S3 tests need it

        return fs.S3FileSystem(
            access_key=self.access_key_id,
            secret_key=self.secret_access_key,
            region=self.region,
            endpoint_override=self.endpoint,
            scheme="http",
            force_virtual_addressing=False,
            allow_bucket_creation=allow_bucket_creation,
        )


class S3Server:
    """One moto server process on 127.0.0.1 at a free port."""

    def __init__(self, log_path: Path, port: int = 0) -> None:
        """Prepare (but do not start) a server logging to `log_path`, at `port` (0: a free
        one; a given one lets a test point headlined at it before it runs)."""
        self.log_path = log_path
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The server's base URL, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers HTTP."""
        if not self.port:
            (self.port,) = free_ports(1)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise S3Error(f"moto exited with {code} while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{self.endpoint}/moto-api/", timeout=2.0)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise S3Error(f"moto did not answer HTTP in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def create_bucket(self, name: str) -> S3Bucket:
        """Create bucket `name`; returns where it is and the credentials to reach it."""
        bucket = S3Bucket(endpoint=self.endpoint, bucket=name)
        bucket.pyarrow_filesystem(allow_bucket_creation=True).create_dir(name)
        return bucket

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of moto's log, to explain a failure."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop moto (SIGTERM; killed after `timeout` s). Its buckets are gone with it."""
        if self._process is not None:
            terminate(self._process, signal.SIGTERM, timeout)
        self._process = None

    def __enter__(self) -> S3Server:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()


@contextlib.contextmanager
def running_s3(log_path: Path) -> Iterator[S3Server]:
    """Run moto's S3 server on loopback, logging to `log_path`; stopped on exit."""
    with S3Server(log_path) as server:
        yield server
