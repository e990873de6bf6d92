"""Rejected lines: counted, the first ones logged, all kept aside in ``<directory>/<stem>.txt`` as
``FILE:LINE: reason: <line>``, sorted by line (LINE is where the error is)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from headlined import durable, logs
from headlined.influx.convert.read import BATCH

log = logs.get("convert")

_LOGGED = 100  # rejected lines logged one by one; the file has them all


def _shown(text: str) -> str:
    """A rejected line on one line of the rejected file."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class Rejects:
    """The rejected lines of one conversion, in the DuckDB table `rejects` until written."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, source: Path, directory: Path, file_stem: str
    ) -> None:
        self._con = con
        self._source = source
        self._target = directory / f"{file_stem}.txt"
        self._rows: list[tuple[int, str, str]] = []
        self.count = 0
        con.execute("CREATE TABLE rejects (line BIGINT, reason VARCHAR, text VARCHAR)")

    def add(self, rowid: int, reason: str, text: str) -> None:
        """Reject the line of row ``rowid`` (physical line ``rowid + 1``) with ``text`` shown."""
        self.count += 1
        if self.count <= _LOGGED:
            log.warning("line_rejected", file=str(self._source), line=rowid + 1, reason=reason)
        self._rows.append((rowid + 1, reason, _shown(text)))
        if len(self._rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Move the buffered rejects into their table."""
        if self._rows:
            self._con.execute(
                "INSERT INTO rejects SELECT unnest($1), unnest($2), unnest($3)",
                [list(column) for column in zip(*self._rows, strict=True)],
            )
            self._rows.clear()

    def write(self) -> None:
        """Publish the rejected file, or remove an old one when nothing was rejected."""
        target = self._target
        if not self.count:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            return
        self.flush()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = durable.temporary(target)
        cursor = self._con.cursor()
        cursor.execute("SELECT line, reason, text FROM rejects ORDER BY line, reason")
        with tmp.open("w", encoding="utf-8", errors="surrogateescape", newline="\n") as out:
            while batch := cursor.fetchmany(BATCH):
                out.writelines(
                    f"{self._source}:{line}: {reason}: {text}\n" for line, reason, text in batch
                )
        cursor.close()
        durable.publish(tmp, target)
        log.warning(
            "rejected_lines_kept", file=str(self._source), rejected=self.count, path=str(target)
        )
