"""The Iceberg SQL catalog named ``headlined``, and the tables headlined keeps in it.

Any Iceberg client opens the same tables with ``type=sql``, the same SQLAlchemy URL and the
same warehouse. Tables are created race-safely (a concurrent creator wins, the table is then
loaded), with format v2, a name mapping (the lake files carry no Parquet field ids, so readers
find columns by name) and pyiceberg's own commit retries off: a publisher that loses a commit
race plans again from the table (publisher.py), which also covers a schema another site just
changed.

``headlined.messages`` is partitioned by identity(source) and identity(date), as the files
are on disk (one file never spans two). A measurement table is not partitioned: a chunk file
can span years, and a partition may not split a file; Iceberg's per-file min/max of ``time``
prunes just as well for time filters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.exceptions import (
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationError,
)
from pyiceberg.io import (
    PY_IO_IMPL,
    S3_ACCESS_KEY_ID,
    S3_CONNECT_TIMEOUT,
    S3_ENDPOINT,
    S3_FORCE_VIRTUAL_ADDRESSING,
    S3_REGION,
    S3_REQUEST_TIMEOUT,
    S3_SECRET_ACCESS_KEY,
    S3_SESSION_TOKEN,
)
from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible
from pyiceberg.table import CommitTableResponse, Table, TableProperties
from pyiceberg.table.update import TableRequirement, TableUpdate
from pyiceberg.typedef import Identifier
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from headlined.config import LakeS3Config
from headlined.lake import durable_io
from headlined.lake.layout import TableId, table_name

CATALOG_NAME = "headlined"
# Seconds: opening a connection to PostgreSQL or S3, and one S3 request.
CONNECT_TIMEOUT = 10
REQUEST_TIMEOUT = 60
PARTITION_COLUMNS = ("source", "date")
METADATA_VERSIONS_KEPT = 100
# How pyiceberg says that a column's type cannot change: "…: <column>: <old> -> <new>".
_TYPE_CHANGE = re.compile(r": (?P<column>[^:]+): (?P<old>\S+) -> (?P<new>\S+)$")


class LakeError(Exception):
    """The lake cannot be published to (an outage) or refuses something (a schema conflict).

    The message says what and how to fix it, and never holds a secret (the catalog's
    password, S3 keys).
    """


def redacted(url: str) -> str:
    """A SQLAlchemy URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  an unparsable URL: say nothing of its content
        return "<the lake.catalog URL>"


def warehouse_uri(warehouse: str) -> str:
    """``s3://…`` as it is; a directory as a ``file://`` URI (unescaped: pyiceberg's local
    FileIO takes the path of the URI as it is)."""
    if "://" in warehouse:
        return warehouse.rstrip("/")
    return f"file://{Path(warehouse).absolute()}"


def catalog_url(url: str) -> str:
    """The catalog URL with a connect timeout for PostgreSQL (unless the URL sets one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
    return parsed.render_as_string(hide_password=False)


def catalog_properties(url: str, warehouse: str, s3: LakeS3Config | None) -> dict[str, str]:
    """The properties SqlCatalog is opened with (they hold secrets: never log them)."""
    properties = {
        "uri": catalog_url(url),
        "warehouse": warehouse_uri(warehouse),
        # A connection the pool kept across a PostgreSQL restart is tested before use.
        "pool_pre_ping": "true",
        # pyiceberg's metadata on a local warehouse on disk before the catalog points at it.
        PY_IO_IMPL: durable_io.IMPLEMENTATION,
        S3_CONNECT_TIMEOUT: str(CONNECT_TIMEOUT),
        S3_REQUEST_TIMEOUT: str(REQUEST_TIMEOUT),
    }
    if s3 is not None:
        properties[S3_REGION] = s3.region
        properties[S3_FORCE_VIRTUAL_ADDRESSING] = str(not s3.path_style).lower()
        optional = {
            S3_ENDPOINT: s3.endpoint,
            S3_ACCESS_KEY_ID: s3.access_key_id,
            S3_SECRET_ACCESS_KEY: s3.secret_access_key,
            S3_SESSION_TOKEN: s3.session_token,
        }
        properties.update({key: value for key, value in optional.items() if value})
    return properties


class HeadlinedCatalog(SqlCatalog):
    """pyiceberg's SQL catalog, which can also commit onto a table its caller holds as current
    (``commit_onto``) instead of reading the table's metadata again first."""

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        self._current: Table | None = None

    def commit_onto(
        self,
        table: Table,
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> CommitTableResponse:
        """``commit_table`` with ``table`` taken as the table's current state.

        SqlCatalog's commit loads the table (a read and parse of its whole metadata, on S3 a
        GET) only to apply the updates to it. It then moves the catalog's pointer with an
        UPDATE conditioned on the pointer it loaded, which is what makes a commit safe against
        other writers. Taken from ``table`` instead, a stale ``table`` fails that UPDATE:
        CommitFailedException, as a lost race does."""
        self._current = table
        try:
            return self.commit_table(table, requirements, updates)
        finally:
            self._current = None

    def load_table(self, identifier: str | Identifier) -> Table:
        """The table from the catalog, or the one ``commit_onto`` is committing onto."""
        current = self._current
        if current is not None and identifier == current.name():
            return current
        return super().load_table(identifier)


def open_catalog(url: str, warehouse: str, s3: LakeS3Config | None) -> HeadlinedCatalog:
    """Open (and on first use create) the catalog; LakeError when it cannot be reached."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001  SQLAlchemy's parse errors quote the URL: say less
        raise LakeError("lake.catalog is not a SQLAlchemy URL") from None
    try:
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if "://" not in warehouse:
            Path(warehouse).mkdir(parents=True, exist_ok=True)
    except OSError as why:
        raise LakeError(f"the lake's folders cannot be made: {why}") from None
    properties = catalog_properties(url, warehouse, s3)
    # Two daemons creating the catalog's tables at once: the loser's CREATE fails, and a
    # second try finds the tables.
    for attempt in range(2):
        try:
            return HeadlinedCatalog(CATALOG_NAME, **properties)
        except Exception as why:  # noqa: BLE001  any driver error: say which catalog, no secret
            if attempt == 0:
                continue
            if isinstance(why, ModuleNotFoundError):
                raise LakeError(
                    f"the Iceberg catalog {redacted(url)} needs the Python module {why.name!r}, "
                    "which is not installed: for PostgreSQL write postgresql://… (psycopg2, "
                    "installed with headlined's lake extra)"
                ) from None
            raise LakeError(
                f"the Iceberg catalog {redacted(url)} cannot be opened: "
                f"{type(why).__name__}: {_without(str(why), properties)}"
            ) from None
    raise AssertionError("unreachable")


def metadata_locations(catalog: SqlCatalog) -> dict[TableId, str | None]:
    """Where each table of the catalog has its current metadata, in one query: a table whose
    pointer did not move since it was last read holds what it held then (loading it instead
    reads and parses its whole metadata file). A namespace is a database's name as it is,
    dots and all."""
    query = select(
        IcebergTables.table_namespace, IcebergTables.table_name, IcebergTables.metadata_location
    ).where(IcebergTables.catalog_name == catalog.name)
    with Session(catalog.engine) as session:
        rows = session.execute(query).all()
    return {(str(namespace), str(name)): location for namespace, name, location in rows}


def _without(text: str, properties: Mapping[str, str]) -> str:
    """``text`` with every secret the properties hold blanked out (drivers quote URLs)."""
    for key in (S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN):
        if properties.get(key):
            text = text.replace(properties[key], "***")
    password = make_url(properties["uri"]).password
    if password:
        text = text.replace(str(password), "***")
    return text


def ensure_table(
    catalog: SqlCatalog,
    table: TableId,
    schema: pa.Schema,
    location: str,
    partitioned: bool,
) -> Table:
    """Load ``table``, or create it (and its namespace) from a lake file's schema.

    ``partitioned``: identity partitions on ``source`` and ``date`` (the messages table).
    """
    try:
        return catalog.load_table(table)
    except NoSuchTableError:
        pass
    try:
        catalog.create_namespace(table[0])
    except NamespaceAlreadyExistsError:
        pass
    except Exception:
        # A concurrent creator's row makes the insert fail with the driver's own error.
        if (table[0],) not in catalog.list_namespaces():
            raise
    # Every column optional: a later file may lack one (a field that stopped being written).
    schema = _optional(schema)
    try:
        tx = catalog.create_table_transaction(
            table,
            schema,
            location=location,
            properties={
                TableProperties.FORMAT_VERSION: "2",
                TableProperties.COMMIT_NUM_RETRIES: "0",
                TableProperties.PARQUET_COMPRESSION: "zstd",
                # Every commit writes a new metadata file; without this they pile up forever
                # (one per publishing interval with news).
                TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
                TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: str(METADATA_VERSIONS_KEPT),
                # Manifests merged once a snapshot holds 100 (Java's default; pyiceberg's is
                # off): else one more each commit, forever, for every reader to open.
                TableProperties.MANIFEST_MERGE_ENABLED: "true",
            },
        )
        if partitioned:
            with tx.update_spec() as spec:
                for column in PARTITION_COLUMNS:
                    spec.add_identity(column)
            # The first 16 characters of a JSON text prune nothing; counts only (each
            # flush's statistics cost less, its manifest entry is smaller).
            tx.set_properties(
                {f"{TableProperties.METRICS_MODE_COLUMN_CONF_PREFIX}.payload": "counts"}
            )
        mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
        tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: mapping})
        return tx.commit_transaction()
    except TableAlreadyExistsError:
        return catalog.load_table(table)


def _optional(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_nullable(True) for field in schema])


def fits(table: Table, schema: pa.Schema) -> bool:
    """Whether a lake file of ``schema`` can be registered in ``table`` as it is."""
    try:
        _check_pyarrow_schema_compatible(
            table.schema(), schema, format_version=table.metadata.format_version
        )
    except ValueError:
        return False
    return True


def evolve(table: Table, schema: pa.Schema, what: str) -> Table:
    """Add the columns of ``schema`` that ``table`` lacks, and widen what Iceberg can widen
    (int to long, float to double); LakeError naming the column and both types otherwise.

    ``what`` names the file the schema comes from, for the message.
    """
    try:
        with table.update_schema() as update:
            update.union_by_name(_optional(schema))
    except (ValidationError, ValueError, TypeError) as why:
        raise LakeError(_conflict(table, what, why)) from None
    return table


def _conflict(table: Table, what: str, why: Exception) -> str:
    name = table_name(_identifier(table))
    found = _TYPE_CHANGE.search(str(why))
    if found is None:
        return f"table {name}: {what} does not fit its schema: {why}"
    return (
        f"table {name}: column {found['column']!r} is {found['old']} in the table but "
        f"{found['new']} in {what}, and Iceberg cannot change a column's type that way; "
        "that file waits (drop the table to have it made afresh from all files)"
    )


def _identifier(table: Table) -> TableId:
    ident = table.name()
    return (str(ident[-2]), str(ident[-1]))
