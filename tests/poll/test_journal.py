"""The poll journal's framing and files (headlined/poll/journal.py)."""

from __future__ import annotations

import json
import math
import resource
import signal
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from headlined.poll import journal
from headlined.poll.gaps import Gap
from headlined.poll.journal import Journal
from headlined.poll.records import Record
from headlined.poll.tables import Poll, Summary

AT = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)


def poll(new: list[Record], gap: Gap | None = None, source: str = "feed") -> Poll:
    summary = Summary(source, AT, 12.5, 200, len(new), 3, 1.5, None, 2)
    return Poll(summary, new, gap, {"rate": 2.0}, AT)


def test_a_frame_is_one_line_holding_the_whole_poll() -> None:
    when = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    records = [Record("[1]", when, {"id": 1, "text": "a\nb \u00e9"}, ("[]", 1))]
    frame = journal.encode(poll(records, Gap("[0]", "[1]", 7)), number=42)
    assert frame.endswith(b"\n")
    assert frame.count(b"\n") == 1
    data = json.loads(frame)
    assert data["n"] == 42
    assert data["source"] == "feed"
    assert data["attempts"] == 2
    assert datetime.fromisoformat(data["started_at"]) == AT
    assert data["gap"] == {"last_seen_key": "[0]", "first_new_key": "[1]", "est_missing": 7}
    assert data["state"] == {"rate": 2.0}
    [record] = data["new"]
    assert record["k"] == "[1]"
    assert datetime.fromisoformat(record["t"]) == when
    assert record["p"] == {"id": 1, "text": "a\nb \u00e9"}


def test_values_orjson_cannot_write_still_make_a_valid_frame() -> None:
    payload = {"big": 2**70, "nan": math.nan, "lone": "x\ud800y"}
    frame = journal.encode(poll([Record("[1]", AT, payload, None)]), number=1)
    data = json.loads(frame.decode("utf-8"))  # strict UTF-8: no surrogate got through
    p = data["new"][0]["p"]
    assert p["big"] == 2**70
    assert p["nan"] is None
    assert p["lone"] == "x?y"
    assert datetime.fromisoformat(data["new"][0]["t"]) == AT


def test_repair_cuts_only_a_half_written_last_frame(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3')
    assert journal.repair(path) == len(b'{"n":3')
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n'
    assert journal.repair(path) == 0
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n'


def test_repair_empties_a_file_without_one_whole_frame(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"x" * 200_000)  # longer than one read-back block
    assert journal.repair(path) == 200_000
    assert path.read_bytes() == b""


def close(j: Journal) -> journal.Segment | None:
    rotated = j.rotate()
    if rotated is None:
        return None
    segment, sync_and_close = rotated
    sync_and_close()
    return segment


def test_segments_are_numbered_above_what_was_applied_and_what_is_on_disk(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path / "j")
    j.start_after(41)  # every segment up to 41 applied and deleted
    assert close(j) is None  # nothing written, no segment
    j.append(b"a\n")
    j.sync_job()()
    j.append(b"b\n")
    first = close(j)
    assert first is not None
    assert (first.number, first.polls) == (42, 2)
    assert first.path.read_bytes() == b"a\nb\n"
    assert [n for n, _ in journal.existing(tmp_path / "j")] == [42]

    again = Journal(tmp_path / "j")
    again.start_after(7)  # an older applied number: the file on disk still counts
    again.append(b"c\n")
    second = close(again)
    assert second is not None
    assert second.number == 43


def test_a_failed_write_leaves_no_half_frame(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.start_after(0)
    j.append(b"first\n")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        # Like a disk filling up in the middle of a frame: 4 bytes go in, then EFBIG.
        resource.setrlimit(resource.RLIMIT_FSIZE, (10, limit[1]))
        with pytest.raises(OSError, match="too large"):
            j.append(b"second frame\n")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    j.append(b"third\n")
    segment = close(j)
    assert segment is not None
    assert segment.path.read_bytes() == b"first\nthird\n"
    assert segment.polls == 2


@pytest.mark.parametrize("name", ["notes.txt", "abc.jsonl", "12.jsonl.tmp"])
def test_other_files_are_not_segments(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("x")
    (tmp_path / f"{3:016d}.jsonl").write_text("")
    assert [n for n, _ in journal.existing(tmp_path)] == [3]
