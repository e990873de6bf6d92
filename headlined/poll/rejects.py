"""Where rejected input is kept for a person to look at: a bounded sample per origin."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from headlined import durable

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class RejectSampler:
    """Keeps the newest ``keep`` rejected bodies per origin, each cut to ``max_bytes``."""

    def __init__(self, directory: Path, keep: int = 20, max_bytes: int = 64 * 1024) -> None:
        self.directory = directory
        self.keep = keep
        self.max_bytes = max_bytes
        self._serial = 0

    def save(
        self, origin: str, kind: str, detail: str, body: bytes, status: int | None = None
    ) -> Path:
        """Write one sample (blocking: call it off the event loop) and prune old ones."""
        folder = self.directory / _UNSAFE.sub("_", origin)
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        self._serial += 1
        path = folder / f"{now:%Y%m%dT%H%M%S.%fZ}-{self._serial:06d}-{_UNSAFE.sub('_', kind)}.txt"
        header = (
            f"origin: {origin}\nkind: {kind}\ndetail: {detail}\nhttp_status: {status}\n"
            f"at: {now.isoformat()}\nbody_bytes_kept: {min(len(body), self.max_bytes)}"
            f" of {len(body)}\n\n"
        )
        durable.write_atomic(path, header.encode() + body[: self.max_bytes])
        samples = sorted(folder.glob("*.txt"))
        for old in samples[: max(0, len(samples) - self.keep)]:
            old.unlink(missing_ok=True)
        return path
