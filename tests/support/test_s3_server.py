"""The S3 emulator helper: moto's server on loopback, reached as pyiceberg and users do."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.s3_server import S3Bucket, S3Server
from tests.support.sockets import listening_addresses


@pytest.mark.integration
def test_put_and_get_through_pyarrow_s3(s3_bucket: S3Bucket, s3_server: S3Server) -> None:
    """A Parquet file written through pyarrow's S3FileSystem reads back equal; another
    bucket does not hold it."""
    fs = s3_bucket.pyarrow_filesystem()
    table = pa.table({"id": [1, 2, 3], "name": ["a", "ข", None]})
    key = f"{s3_bucket.bucket}/data/site-a/part-0.parquet"
    with fs.open_output_stream(key) as out:
        pq.write_table(table, out)
    with fs.open_input_file(key) as src:
        assert pq.read_table(src).equals(table)
    listed = fs.get_file_info(pa.fs.FileSelector(f"{s3_bucket.bucket}/data", recursive=True))
    assert [info.path for info in listed if info.is_file] == [key]

    other = s3_server.create_bucket("another-bucket")
    assert (
        other.pyarrow_filesystem().get_file_info("another-bucket/data/site-a/part-0.parquet").type
        == pa.fs.FileType.NotFound
    )


@pytest.mark.integration
def test_listens_on_loopback_only(s3_server: S3Server) -> None:
    """The emulator listens on 127.0.0.1 and no other address."""
    assert s3_server.endpoint == f"http://127.0.0.1:{s3_server.port}"
    assert listening_addresses(s3_server.port) == {"127.0.0.1"}


@pytest.mark.integration
def test_stop_closes_the_port(tmp_path: Path) -> None:
    """After stop() nothing listens any more."""
    with S3Server(tmp_path / "moto.log") as server:
        port = server.port
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
