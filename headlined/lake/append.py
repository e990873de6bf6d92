"""An append-only commit of data files to an Iceberg table, made without pyiceberg's Transaction.

A lake cycle of messages adds a few dozen files and nothing else. pyiceberg's Transaction
re-applies its pending updates to a deep copy of the table's metadata at every access (about
twenty a commit): that was a third of such a cycle (bench/RESULTS.md). This writes what the
Iceberg spec asks of a fast append, with pyiceberg's own writers: one new manifest of the
added files, a manifest list of it and the parent snapshot's manifests, a snapshot with its
summary; then one catalog commit with the table's requirements (its uuid, and ``main`` still
at the parent snapshot: a concurrent writer's commit fails it with CommitFailedException, as
pyiceberg's own commit does).

Manifests are never merged here: the caller takes pyiceberg's merge append once a snapshot
holds ``merge_at`` manifests (``commit.manifest.min-count-to-merge``, as Java merges), so
readers never face an ever longer list.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast, get_args

from pyiceberg.avro.codecs import AvroCompressionCodec
from pyiceberg.catalog import delete_files
from pyiceberg.manifest import (
    DataFile,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import (
    Operation,
    Snapshot,
    SnapshotSummaryCollector,
    Summary,
    update_snapshot_summaries,
)
from pyiceberg.table.update import (
    AddSnapshotUpdate,
    AssertRefSnapshotId,
    AssertTableUUID,
    SetSnapshotRefUpdate,
)
from pyiceberg.utils.properties import property_as_bool, property_as_int

from headlined.lake.catalog import HeadlinedCatalog


@dataclass(frozen=True)
class Appended:
    """What a fast append committed: the manifest of the added files and the new snapshot's
    manifest list (the caller's cache, so that neither is read back)."""

    manifest: ManifestFile
    manifest_list: str


def merges(table: Table) -> bool:
    """Whether the table's manifests are to be merged (``commit.manifest-merge.enabled``;
    Java's default, true, where the table does not say: pyiceberg's is false)."""
    return bool(
        property_as_bool(table.metadata.properties, TableProperties.MANIFEST_MERGE_ENABLED, True)
    )


def merge_at(table: Table) -> int:
    """How many manifests a snapshot may hold before the next commit merges them."""
    default = TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT
    count = property_as_int(
        table.metadata.properties, TableProperties.MANIFEST_MIN_MERGE_COUNT, default
    )
    return count if count is not None else default


def fast_append(
    table: Table,
    files: Sequence[DataFile],
    properties: dict[str, str],
    existing: Sequence[ManifestFile],
) -> Appended:
    """Commit ``files`` to ``table``'s main branch as one new snapshot (``properties`` in its
    summary), whose manifests are a new one of ``files`` and ``existing``, the current
    snapshot's; ``table`` is updated in place.

    Raises CommitFailedException if another writer moved the branch first (nothing of this
    commit is then referenced: its manifest and list are left as orphans, as pyiceberg does
    when a retry gives up)."""
    catalog = table.catalog
    if not isinstance(catalog, HeadlinedCatalog):  # catalog.open_catalog opens no other kind
        raise TypeError(f"a fast append needs a HeadlinedCatalog, not {type(catalog).__name__}")
    metadata = table.metadata
    parent = metadata.current_snapshot()
    parent_id = parent.snapshot_id if parent is not None else None
    snapshot_id = metadata.new_snapshot_id()
    sequence = metadata.next_sequence_number()
    compression = _codec(metadata.properties.get(TableProperties.WRITE_AVRO_COMPRESSION))
    commit = uuid.uuid4()
    where = table.location_provider()
    spec, schema = metadata.spec(), metadata.schema()
    with write_manifest(
        format_version=metadata.format_version,
        spec=spec,
        schema=schema,
        output_file=table.io.new_output(where.new_metadata_location(f"{commit}-m0.avro")),
        snapshot_id=snapshot_id,
        avro_compression=compression,
    ) as writer:
        for data_file in files:
            writer.add(
                ManifestEntry.from_args(
                    status=ManifestEntryStatus.ADDED,
                    snapshot_id=snapshot_id,
                    sequence_number=None,
                    file_sequence_number=None,
                    data_file=data_file,
                )
            )
    manifest = writer.to_manifest_file()
    manifest_list = where.new_metadata_location(f"snap-{snapshot_id}-0-{commit}.avro")
    with write_manifest_list(
        format_version=metadata.format_version,
        output_file=table.io.new_output(manifest_list),
        snapshot_id=snapshot_id,
        parent_snapshot_id=parent_id,
        sequence_number=sequence,
        avro_compression=compression,
    ) as list_writer:
        list_writer.add_manifests([manifest, *existing])
    collector = SnapshotSummaryCollector(
        partition_summary_limit=property_as_int(
            metadata.properties,
            TableProperties.WRITE_PARTITION_SUMMARY_LIMIT,
            TableProperties.WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT,
        )
        or 0
    )
    for data_file in files:
        collector.add_file(data_file, schema=schema, partition_spec=spec)
    summary = update_snapshot_summaries(
        Summary(Operation.APPEND, **collector.build(), **properties),
        previous_summary=parent.summary if parent is not None else None,
    )
    # By the spec's field names (pyiceberg's models declare them as aliases).
    snapshot = Snapshot.model_validate(
        {
            "snapshot-id": snapshot_id,
            "parent-snapshot-id": parent_id,
            "sequence-number": sequence,
            "manifest-list": manifest_list,
            "summary": summary,
            "schema-id": metadata.current_schema_id,
        }
    )
    # Onto the table as the caller holds it (see commit_onto).
    response = catalog.commit_onto(
        table,
        (
            AssertTableUUID(uuid=metadata.table_uuid),
            AssertRefSnapshotId.model_validate({"snapshot-id": parent_id, "ref": MAIN_BRANCH}),
        ),
        (
            AddSnapshotUpdate(snapshot=snapshot),
            SetSnapshotRefUpdate.model_validate(
                {
                    "snapshot-id": snapshot_id,
                    "ref-name": MAIN_BRANCH,
                    "type": SnapshotRefType.BRANCH,
                }
            ),
        ),
    )
    _forget_old_metadata(table, metadata, response.metadata)
    table.metadata = response.metadata
    table.metadata_location = response.metadata_location
    return Appended(manifest, manifest_list)


def _codec(name: str | None) -> AvroCompressionCodec:
    """The table's Avro codec for manifests (``write.avro.compression-codec``)."""
    codecs: tuple[str, ...] = get_args(AvroCompressionCodec)
    chosen = name if name in codecs else TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT
    return cast("AvroCompressionCodec", chosen)


def _forget_old_metadata(table: Table, base: TableMetadata, new: TableMetadata) -> None:
    """Delete the metadata files the commit dropped from the table's log, when the table says
    so (``write.metadata.delete-after-commit.enabled``), as pyiceberg's own commit does."""
    if not property_as_bool(
        new.properties,
        TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED,
        TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED_DEFAULT,
    ):
        return
    dropped = {entry.metadata_file for entry in base.metadata_log} - {
        entry.metadata_file for entry in new.metadata_log
    }
    delete_files(table.io, dropped, "metadata")
