"""What influx_inspect says on stderr about data it skipped (pure: text in, findings out).

See docs/exporter.md for the messages it knows.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Literal

from headlined.influx.chunkplan import rfc3339
from headlined.influx.protocol import CHECKSUM_PREFIX

SEPARATOR = "#!~#"  # between series key and field in a TSM key (tsm1.keyFieldSeparator)
_KEY = re.compile(r'unable to read key ("(?:[^"\\]|\\.)*") in (.+?), skipping: (.*)')
_FILE = re.compile(r"unable to read (.+?), skipping: (.*)")
_CHECKSUM = re.compile(
    re.escape(CHECKSUM_PREFIX) + r' ("(?:[^"\\]|\\.)*") in (.+?) \(times (-?\d+)\.\.(-?\d+)\)'
)
_WAL = re.compile(r"file (.+?) corrupt at position (\d+): (.*?)(?=file .+? corrupt at |$)")
_DELETES = re.compile(
    r"WARNING: detected deletes in wal file\.\s*Some series for (\"(?:[^\"\\]|\\.)*\") may "
    r"be brought back by replaying this data\.\s*To resolve, you can either let the shard "
    r"snapshot prior to exporting the data\s*or manually editing the exported file\.\s*",
)
_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    '"': 34,
    "'": 39,
}

Kind = Literal["key", "checksum", "file", "wal", "other"]


@dataclass(frozen=True, slots=True)
class Skipped:
    """One thing influx_inspect reported skipping."""

    kind: Kind
    file: str
    error: str
    series: str | None = None
    field: str | None = None

    def describe(self) -> str:
        """One line for a log event or the chunk's error column."""
        if self.kind in ("key", "checksum"):
            return f"{self.series} field {self.field} in {self.file}: {self.error}"
        if self.kind == "other":
            return f"influx_inspect said: {self.error}"
        return f"{self.file}: {self.error}"

    def to_json(self) -> dict[str, str | None]:
        """For ``export_chunks.damage``."""
        return {
            "kind": self.kind,
            "file": self.file,
            "series": self.series,
            "field": self.field,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one export's stderr said."""

    skipped: tuple[Skipped, ...]
    wal_deletes: tuple[str, ...]  # "db/rp" whose WAL holds deletes influx_inspect replays


def go_unquote(quoted: str) -> str:
    """The string of a Go ``%q`` literal; bytes that are not UTF-8 become U+FFFD."""
    body = quoted[1:-1] if len(quoted) >= 2 and quoted[0] == quoted[-1] == '"' else quoted
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\" or i + 1 == len(body):
            out += char.encode()
            i += 1
            continue
        code = body[i + 1]
        if code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
            i += 2
        elif code == "x" and _hex(body[i + 2 : i + 4], 2):
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif code in "uU" and _hex(body[i + 2 : i + 2 + (4 if code == "u" else 8)], 4):
            width = 4 if code == "u" else 8
            point = int(body[i + 2 : i + 2 + width], 16)
            out += (chr(point) if point <= 0x10FFFF else "\ufffd").encode("utf-8", "replace")
            i += 2 + width
        elif code in "01234567" and len(body) >= i + 4 and _octal(body[i + 1 : i + 4]):
            out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out += char.encode()
            i += 1
    return out.decode("utf-8", "replace")


def _hex(text: str, width: int) -> bool:
    return len(text) >= width and all(c in "0123456789abcdefABCDEF" for c in text)


def _octal(text: str) -> bool:
    return len(text) == 3 and all(c in "01234567" for c in text)


def _split_key(key: str) -> tuple[str, str]:
    series, _, field = key.rpartition(SEPARATOR)
    return (series, field) if series else (key, "")


def parse(stderr: str) -> Report:
    """Sort every message of one export's stderr into skipped data and WAL delete warnings."""
    deletes = [go_unquote(m.group(1)) for m in _DELETES.finditer(stderr)]
    text = _DELETES.sub("\n", stderr)
    skipped: list[Skipped] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if match := _KEY.fullmatch(line):
            series, field = _split_key(go_unquote(match.group(1)))
            skipped.append(Skipped("key", match.group(2), match.group(3), series, field))
        elif match := _CHECKSUM.fullmatch(line):
            series, field = _split_key(go_unquote(match.group(1)))
            first, last = int(match.group(3)), int(match.group(4))
            error = (
                f"block fails its checksum: its values from {rfc3339(first)} to "
                f"{rfc3339(last)} were exported but may be wrong"
            )
            skipped.append(Skipped("checksum", match.group(2), error, series, field))
        elif match := _FILE.fullmatch(line):
            skipped.append(Skipped("file", match.group(1), match.group(2)))
        elif line.startswith("file ") and (wals := list(_WAL.finditer(line))):
            # Printed without a newline: two such messages can share a line.
            for wal in wals:
                error = f"corrupt at position {wal.group(2)}: {wal.group(3).strip()}"
                skipped.append(Skipped("wal", wal.group(1), error))
        else:
            skipped.append(Skipped("other", "", line))
    # A key influx_inspect could not read is missing, not "maybe wrong": one finding is enough.
    unread = {(s.file, s.series, s.field) for s in skipped if s.kind == "key"}
    kept = [s for s in skipped if s.kind != "checksum" or (s.file, s.series, s.field) not in unread]
    return Report(tuple(kept), tuple(deletes))


def describe_exit(code: int) -> str:
    """``exited 1``, or ``was killed by SIGKILL`` for a negative (signal) return code."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"
