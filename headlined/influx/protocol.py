"""The wire format between the daemon and ``headlined-inspect`` (pure).

A request is one JSON line; a reply is ``D``/``E`` frames, then one ``R`` or ``F``. An
``export`` request may come with a pipe (SCM_RIGHTS, on a Unix socket) and say so
(``passed_pipe``): influx_inspect then writes into it and the reply holds no ``D`` frame. See
docs/exporter.md.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal

DATA, STDERR, RESULT, FAILURE = b"D", b"E", b"R", b"F"
KINDS = frozenset((DATA, STDERR, RESULT, FAILURE))
_HEADER = struct.Struct(">cI")
MAX_FRAME = 16 * 1024 * 1024
MAX_REQUEST = 64 * 1024
# RFC 3339 as influx_inspect's -start/-end take it (Go's time.RFC3339 accepts fractions).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")

Op = Literal["discover", "export", "wal_scan"]
# How headlined-inspect adds, among influx_inspect's stderr, a block that fails its CRC32.
CHECKSUM_PREFIX = "headlined-inspect: checksum mismatch in the block of key"


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of a time :data:`_RFC3339` accepts (exact: no float)."""
    if not _RFC3339.fullmatch(text):
        raise ProtocolError(f"not an RFC 3339 UTC time: {text!r}")
    whole, _, fraction = text[:-1].partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


class ProtocolError(Exception):
    """A malformed request or reply; the message says what was wrong."""


@dataclass(frozen=True, slots=True)
class Request:
    """What the daemon asks for. ``export`` and ``wal_scan`` name one database/RP."""

    op: Op
    data_dir: str
    wal_dir: str
    meta_dir: str = ""
    databases: tuple[str, ...] = ()
    database: str = ""
    retention_policy: str = ""
    start: str = ""
    end: str = ""
    # The line protocol goes into the pipe sent with this request, not back in D frames.
    passed_pipe: bool = False

    def encode(self) -> bytes:
        """One JSON line."""
        return (
            json.dumps(
                {
                    "op": self.op,
                    "data_dir": self.data_dir,
                    "wal_dir": self.wal_dir,
                    "meta_dir": self.meta_dir,
                    "databases": list(self.databases),
                    "database": self.database,
                    "retention_policy": self.retention_policy,
                    "start": self.start,
                    "end": self.end,
                    "passed_pipe": self.passed_pipe,
                }
            ).encode()
            + b"\n"
        )


def decode_request(line: bytes) -> Request:
    """Parse and check one request line; ProtocolError says what is wrong with it."""
    if len(line) > MAX_REQUEST:
        raise ProtocolError(f"request longer than {MAX_REQUEST} bytes")
    raw = decode_json(line, "request")
    op = raw.get("op")
    if op not in ("discover", "export", "wal_scan"):
        raise ProtocolError(f"unknown op {op!r}")
    texts = {}
    for key in ("data_dir", "wal_dir", "meta_dir", "database", "retention_policy", "start", "end"):
        value = raw.get(key, "")
        if not isinstance(value, str) or "\x00" in value:
            raise ProtocolError(f"{key}: not a string")
        texts[key] = value
    databases = raw.get("databases", [])
    if not isinstance(databases, list) or not all(isinstance(d, str) for d in databases):
        raise ProtocolError("databases: not a list of strings")
    passed_pipe = raw.get("passed_pipe", False)
    if not isinstance(passed_pipe, bool):
        raise ProtocolError("passed_pipe: not true or false")
    if passed_pipe and op != "export":
        raise ProtocolError(f"{op} takes no pipe")
    if not texts["data_dir"] or not texts["wal_dir"]:
        raise ProtocolError("data_dir and wal_dir are required")
    if op != "discover" and not (texts["database"] and texts["retention_policy"]):
        raise ProtocolError(f"{op} needs database and retention_policy")
    for key in ("start", "end"):
        if texts[key] and not _RFC3339.fullmatch(texts[key]):
            raise ProtocolError(f"{key}: not an RFC 3339 UTC time: {texts[key]!r}")
    return Request(op=op, databases=tuple(databases), passed_pipe=passed_pipe, **texts)


def frame_header(kind: bytes, size: int) -> bytes:
    """The header of a frame of ``size`` bytes (for a payload written by other means)."""
    if kind not in KINDS or not 0 <= size <= MAX_FRAME:
        raise ProtocolError(f"no frame of kind {kind!r} and {size} bytes")
    return _HEADER.pack(kind, size)


def write_frame(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    """Write one frame (not flushed); a payload over MAX_FRAME is split into several."""
    if kind not in KINDS:
        raise ProtocolError(f"unknown frame kind {kind!r}")
    if kind in (RESULT, FAILURE) and len(payload) > MAX_FRAME:
        raise ProtocolError(f"{kind.decode()} frame of {len(payload)} bytes")
    for at in range(0, max(len(payload), 1), MAX_FRAME):
        piece = payload[at : at + MAX_FRAME]
        out.write(_HEADER.pack(kind, len(piece)))
        out.write(piece)


def write_json(out: BinaryIO, kind: bytes, document: dict[str, Any]) -> None:
    """A ``R`` or ``F`` frame holding ``document``, flushed: the reply is complete."""
    write_frame(out, kind, json.dumps(document).encode())
    out.flush()


def read_frame(source: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame, or None at a clean end of stream (between frames)."""
    header = read_header(source)
    if header is None:
        return None
    kind, size = header
    return kind, _read_exactly(source, size)


def read_header(source: BinaryIO) -> tuple[bytes, int] | None:
    """The next frame's kind and size (its payload follows), or None at a clean end."""
    first = source.read(_HEADER.size)
    if not first:
        return None
    header = first + _read_exactly(source, _HEADER.size - len(first))
    kind, size = _HEADER.unpack(header)
    if kind not in KINDS:
        raise ProtocolError(f"unknown frame kind {kind!r}")
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is over the limit of {MAX_FRAME}")
    return kind, size


def read_payload(source: BinaryIO, size: int) -> bytes:
    """The ``size`` bytes of the payload after a header read by read_header."""
    return _read_exactly(source, size)


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    parts = []
    left = size
    while left:
        piece = source.read(left)
        if not piece:
            raise ProtocolError(f"stream ended {size - left} bytes into a {size}-byte read")
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


def decode_json(payload: bytes, what: str = "reply") -> dict[str, Any]:
    """The JSON object of a request line, or of an ``R`` or ``F`` frame."""
    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return document
