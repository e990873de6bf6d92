"""InfluxDB's side of ``headlined verify``: its own counts, over its HTTP API (``influx.url``).

``SELECT count(*) FROM "rp"."m" WHERE time >= … AND time < … GROUP BY *, time(1d) fill(none)``
gives ``count_<field>`` per series per UTC day. The answer is streamed (``chunked=true``)
and read line by line, one window (a month of one measurement) per request, so memory holds
one window's daily counts; every request has a timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
import orjson

from headlined.influx.verify.compare import Counts, series_key

# Between two pieces of an answer: a month of a dense measurement takes InfluxDB seconds.
READ_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
CHUNK_SIZE = 10_000  # rows per piece of a streamed answer
ERROR_EXCERPT = 300


class InfluxError(Exception):
    """InfluxDB could not be reached or refused a query."""


def quote(name: str) -> str:
    """An InfluxQL identifier (database, retention policy, measurement)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxAPI:
    """InfluxDB 1.x's HTTP API at ``url``; ``headers`` and ``auth`` (basic) as configured."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """A client for ``url`` (nothing is sent until a query)."""
        self.url = url
        self._client = httpx.Client(
            base_url=url,
            headers=headers or {},
            auth=auth,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            follow_redirects=True,
            transport=transport,
        )

    def __enter__(self) -> InfluxAPI:
        """The client itself."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connections."""
        self._client.close()

    def measurements(self, database: str) -> list[str]:
        """``SHOW MEASUREMENTS`` of ``database`` (every retention policy's)."""
        names: list[str] = []
        for piece in self._query("SHOW MEASUREMENTS", database):
            for series in piece.get("series", []):
                names += [row[0] for row in series.get("values", [])]
        return sorted(set(names))

    def count(
        self, database: str, retention_policy: str, measurement: str, start_ns: int, end_ns: int
    ) -> Counts:
        """Values per (series, day) and field of one measurement within [start_ns, end_ns)."""
        statement = (
            f"SELECT count(*) FROM {quote(retention_policy)}.{quote(measurement)} "
            f"WHERE time >= {start_ns} AND time < {end_ns} GROUP BY *, time(1d) fill(none)"
        )
        out: Counts = {}
        for piece in self._query(statement, database):
            for series in piece.get("series", []):
                tags = series_key(series.get("tags") or {})
                fields = [str(c).removeprefix("count_") for c in series["columns"][1:]]
                for row in series.get("values", []):
                    values = {k: int(n) for k, n in zip(fields, row[1:], strict=True) if n}
                    if values:
                        day = out.setdefault((tags, int(row[0])), {})
                        for key, n in values.items():
                            day[key] = day.get(key, 0) + n
        return out

    def _query(self, statement: str, database: str) -> Iterator[dict[str, Any]]:
        """The results of ``statement`` piece by piece, as the streamed answer's lines come."""
        params = {
            "q": statement,
            "db": database,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(CHUNK_SIZE),
        }
        try:
            with self._client.stream("POST", "/query", data=params) as response:
                if response.status_code != 200:
                    response.read()
                    raise InfluxError(self._refused(response))
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    body = orjson.loads(line)
                    if "error" in body:
                        raise InfluxError(f"InfluxDB at {self.url}: {body['error']}")
                    for result in body.get("results", []):
                        if "error" in result:
                            raise InfluxError(
                                f"InfluxDB at {self.url} refused {statement!r} on "
                                f"{database!r}: {result['error']}"
                            )
                        yield result
        except httpx.TimeoutException as exc:
            raise InfluxError(
                f"InfluxDB at {self.url} did not answer within {READ_TIMEOUT_S:g} s "
                f"({type(exc).__name__}) to {statement!r}"
            ) from None
        except httpx.HTTPError as exc:
            raise InfluxError(f"cannot reach InfluxDB at {self.url}: {exc}") from None
        except orjson.JSONDecodeError:
            raise InfluxError(
                f"{self.url} answered something that is not InfluxDB's JSON: is influx.url "
                "InfluxDB's HTTP API (port 8086 by default)?"
            ) from None

    def _refused(self, response: httpx.Response) -> str:
        excerpt = response.text.strip()[:ERROR_EXCERPT]
        if response.status_code in (401, 403):
            return (
                f"InfluxDB at {self.url} refused the credentials ({response.status_code}: "
                f"{excerpt}): set influx.username and influx.password, or influx.headers, "
                "for a user allowed to read"
            )
        if response.status_code == 404:
            return (
                f"{self.url} has no /query (404): is influx.url InfluxDB's HTTP API "
                "(port 8086 by default)?"
            )
        return f"InfluxDB at {self.url} answered {response.status_code}: {excerpt}"
