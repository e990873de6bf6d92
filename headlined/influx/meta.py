"""Shard groups from InfluxDB 1.x's ``meta.db``: the time range each shard directory covers.

See docs/exporter.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

META_FILE = "meta.db"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # the protobuf wire types meta.proto uses


class InfluxMetaError(Exception):
    """A meta.db that cannot be read or decoded; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class ShardGroup:
    """A shard group: its shards hold the points with ``start_ns <= time < end_ns``."""

    id: int
    start_ns: int
    end_ns: int  # exclusive, as influxd stores it
    shard_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """A retention policy and its live (not deleted) shard groups, in meta.db's order."""

    name: str
    duration_ns: int  # 0: kept forever
    shard_group_duration_ns: int
    shard_groups: tuple[ShardGroup, ...]


Meta: TypeAlias = dict[str, dict[str, RetentionPolicy]]  # database -> name -> policy


class _Message:
    """The fields of one protobuf message in ``data[start:end]``, scanned but not decoded."""

    def __init__(self, data: bytes, start: int, end: int, kind: str, where: str) -> None:
        self.data = data
        self.start = start
        self.kind = kind
        self.where = where
        # number -> [(wire type, varint value or payload start, field end, key offset)]
        self.fields: dict[int, list[tuple[int, int, int, int]]] = {}
        pos = start
        while pos < end:
            at = pos
            key, pos = self._varint(pos, end, at)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise self.error(at, "invalid field number 0")
            if wire_type == _VARINT:
                value, pos = self._varint(pos, end, at)
            elif wire_type in (_I64, _LEN, _I32):
                if wire_type == _LEN:
                    size, pos = self._varint(pos, end, at)
                else:
                    size = 8 if wire_type == _I64 else 4
                if pos + size > end:
                    raise self._overrun(pos + size, at)
                value, pos = pos, pos + size
            else:  # groups (3, 4) are deprecated and unused by meta.proto; 6 and 7 do not exist
                raise self.error(at, f"unsupported wire type {wire_type}")
            self.fields.setdefault(number, []).append((wire_type, value, pos, at))

    def error(self, at: int, what: str) -> InfluxMetaError:
        return InfluxMetaError(f"{self.where}: byte {at}: {what}")

    def _overrun(self, stop: int, at: int) -> InfluxMetaError:
        # Past the file's end, the file was cut short; past only its message's end, a length
        # or a varint is garbled.
        if stop > len(self.data):
            return InfluxMetaError(f"{self.where}: truncated at byte {len(self.data)}")
        return self.error(at, f"field runs past the end of its {self.kind}")

    def _varint(self, pos: int, end: int, at: int) -> tuple[int, int]:
        data = self.data
        if pos < end and data[pos] < 0x80:  # most are one byte: field keys, small numbers
            return data[pos], pos + 1
        value = shift = 0
        while True:
            if pos >= end:
                raise self._overrun(pos + 1, at)
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift == 70:
                raise self.error(at, "varint longer than 10 bytes")
        if value >> 64:
            raise self.error(at, "varint over 64 bits")
        return value, pos

    def _last(self, number: int, name: str, wire_type: int) -> tuple[int, int]:
        found = self.fields.get(number)
        if not found:
            raise self.error(self.start, f"{self.kind} lacks {name} (field {number})")
        # A scalar field given twice takes its last value, as protobuf decoders do.
        wire, value, end, at = found[-1]
        if wire != wire_type:
            raise self.error(at, f"{self.kind}.{name} has wire type {wire}, not {wire_type}")
        return value, end

    def uint(self, number: int, name: str) -> int:
        return self._last(number, name, _VARINT)[0]

    def int64(self, number: int, name: str) -> int:
        value = self.uint(number, name)
        return value - (1 << 64) if value >> 63 else value  # two's complement, 64 bits

    def string(self, number: int, name: str) -> str:
        start, end = self._last(number, name, _LEN)
        try:
            return self.data[start:end].decode()
        except UnicodeDecodeError:
            raise self.error(start, f"{self.kind}.{name} is not UTF-8") from None

    def messages(self, number: int, kind: str) -> list[_Message]:
        out = []
        for wire, start, end, at in self.fields.get(number, []):
            if wire != _LEN:
                raise self.error(at, f"{self.kind} field {number} has wire type {wire}, not 2")
            out.append(_Message(self.data, start, end, kind, self.where))
        return out


def _retention_policy(rp: _Message) -> RetentionPolicy:
    groups = [
        ShardGroup(
            sg.uint(1, "ID"),
            sg.int64(2, "StartTime"),
            sg.int64(3, "EndTime"),
            tuple(shard.uint(1, "ID") for shard in sg.messages(5, "ShardInfo")),
        )
        for sg in rp.messages(5, "ShardGroupInfo")
        # Deleted: its shards are gone or about to be, and SHOW SHARDS leaves it out too.
        if sg.int64(4, "DeletedAt") == 0
    ]
    return RetentionPolicy(
        rp.string(1, "Name"),
        rp.int64(2, "Duration"),
        rp.int64(3, "ShardGroupDuration"),
        tuple(groups),
    )


def parse_meta(data: bytes, where: str = META_FILE) -> Meta:
    """Retention policies by database and name from the bytes of a meta.db.

    `where` names the file in error messages. Raises InfluxMetaError for anything that is not
    a complete meta.db, however garbled.
    """
    top = _Message(data, 0, len(data), "Data", where)
    # influxd writes fields in number order and MaxShardID (9) last, so a file cut short
    # anywhere, even between two databases, lacks it.
    if 9 not in top.fields:
        raise InfluxMetaError(f"{where}: truncated at byte {len(data)}: no MaxShardID (field 9)")
    meta: Meta = {}
    for db in top.messages(5, "DatabaseInfo"):
        name = db.string(1, "Name")
        if name in meta:
            raise db.error(db.start, f"database {name!r} appears twice")
        policies: dict[str, RetentionPolicy] = {}
        for rp in db.messages(3, "RetentionPolicyInfo"):
            policy = _retention_policy(rp)
            if policy.name in policies:
                raise rp.error(rp.start, f"retention policy {name}.{policy.name} appears twice")
            policies[policy.name] = policy
        meta[name] = policies
    return meta


def read_meta(meta_dir: Path) -> Meta:
    """Retention policies by database and name from ``meta_dir/meta.db``; see parse_meta."""
    path = meta_dir / META_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InfluxMetaError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_meta(data, str(path))


def shard_ranges(meta: Meta) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(database, retention policy, shard id) -> (start_ns, end_ns) of its group, end exclusive."""
    return {
        (database, policy.name, shard): (group.start_ns, group.end_ns)
        for database, policies in meta.items()
        for policy in policies.values()
        for group in policy.shard_groups
        for shard in group.shard_ids
    }
