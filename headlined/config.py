"""The configuration file: typed, validated, with every error pointing at its line.

Validation is pydantic's (it reports every error at once, with a path to the value); we map
each path back to a YAML line through :mod:`headlined.yamlsource`.

What a config is made of:

- The file (``-c FILE``, ``$HEADLINED_CONFIG``, else /etc/headlined/headlined.yaml), then the
  fragments ``FILE.d/*.yaml`` (e.g. /etc/headlined/headlined.yaml.d/10-feeds.yaml), if that
  directory exists, read in file-name order; names starting with "." are skipped. ``.d``
  beside the file rather than one ``conf.d``: two configs in one directory (a test one, a real
  one) each get their own. A fragment's ``sources:`` are added after those read before it (a
  source name used twice is an error naming both places); any other mapping (``influx:``,
  ``metrics:``) is merged key by key, and any other value (``log_level:``, a key inside
  ``influx:``) is replaced by the later file's. Errors point into the file that has the value.
- A file with nothing in it (or only comments) is an error, unless a fragment has something.
- ``${NAME}`` in a string is the environment variable NAME, else the file NAME in
  ``$CREDENTIALS_DIRECTORY`` (systemd's LoadCredential=); missing, it is an error.
  ``${NAME:-default}``: the default when NAME is unset or empty, as in the shell. What a
  variable brings in is kept out of logs; a default written in the file is not (no secret).
- A relative path (``state_dir: var/state``; every :class:`~pathlib.Path` field, and
  ``influx.inspect`` when it has a "/") is relative to the directory of the file that says it,
  never the working directory, which depends on who starts headlined and from where.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import typing
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from headlined import yamlsource
from headlined.yamlsource import Loc, Problem

DEFAULT_PATH = Path("/etc/headlined/headlined.yaml")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ConfigError(Exception):
    """The config is invalid; ``problems`` says where and why, one entry per mistake."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.key))
        super().__init__("\n".join(str(p) for p in self.problems))


def parse_duration(value: object) -> float:
    """``500ms``, ``5s``, ``2m``, ``1h``, ``1d``, ``1w`` or compounds like ``1h30m`` → seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(  # noqa: TRY004  pydantic turns ValueError into a located error
            f"{value!r} is not a duration: write it with a unit, like 5s, 2m, 1h"
        )
    text = value.strip()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration: use 500ms, 5s, 2m, 1h, 1d (or 1h30m)")
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """Seconds → the shortest readable duration string, for logs and status."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.3g}s"


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


Duration = Annotated[float, pydantic.BeforeValidator(_positive_duration)]


def _check_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a URL")  # noqa: TRY004  pydantic wants ValueError
    # Start-up time: httpx takes ~70 ms to import, and only configs with sources need it.
    import httpx  # noqa: PLC0415

    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{value!r} must be an http:// or https:// URL with a host")
    return value


HttpUrl = Annotated[str, pydantic.BeforeValidator(_check_url)]

# Marks a program's name: looked up in $PATH if bare, a path (relative to the file) with a "/".
_PROGRAM = object()
Program = Annotated[str, _PROGRAM]
# Marks a place that is a directory (relative to the file) unless it is a URL (has "://").
_LOCATION = object()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SourceConfig(_Model):
    """One rolling-window JSON API."""

    name: str
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    records: str = ""
    key: list[str] = Field(min_length=1)
    time: str | None = None
    window: int = Field(default=200, ge=1)
    min_interval: Duration = 2.0
    max_interval: Duration = 300.0
    timeout: Duration = 10.0
    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    @field_validator("name")
    @classmethod
    def _name_is_path_safe(cls, value: str) -> str:
        # The name becomes a Parquet partition folder (source=<name>) and a metric label.
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: use letters, digits, '-', '_' and '.', starting with a letter or digit"
            )
        return value

    @field_validator("key")
    @classmethod
    def _keys_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a field twice: {value}")
        return value

    @field_validator("max_interval")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_interval")
        if low is not None and value < low:
            raise ValueError(
                f"{format_duration(value)} is shorter than min_interval {format_duration(low)}"
            )
        return value


class InfluxConfig(_Model):
    """Where InfluxDB 1.x keeps its files, and how to export them."""

    inspect: Program = "influx_inspect"
    data_dir: Path = Path("/var/lib/influxdb/data")
    wal_dir: Path = Path("/var/lib/influxdb/wal")
    # meta.db gives each shard's time range (for a TSM file too damaged to say); None: the
    # "meta" folder beside data_dir, where InfluxDB keeps it by default.
    meta_dir: Path | None = None
    # headlined-inspect.socket reads InfluxDB's files as InfluxDB's user; where it does not
    # exist (or with null) the daemon runs the reader itself, as its own user.
    inspect_socket: Path | None = Path("/run/headlined-inspect.sock")
    databases: list[str] = Field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    # Chunks are planned from the data's volume (the TSM indexes): about chunk_points points
    # each, up to 3x where cutting a shard would make influx_inspect decode its blocks twice;
    # `chunk` (e.g. 7d) also caps how much time one may span.
    chunk: Duration | None = None
    chunk_points: int = Field(default=5_000_000, ge=1000)
    # How often the daemon looks for what changed in InfluxDB and exports it again; null: the
    # daemon exports once per start (and when `headlined export` asks).
    follow: Duration | None = 3600.0
    output_dir: Path = Path("/var/lib/headlined/influx")
    # InfluxDB's HTTP API, for `headlined verify` (which counts in InfluxDB itself); None:
    # verify says to set it. Credentials as for sources: headers, or basic auth; the values
    # of headers and password are secrets.
    url: HttpUrl | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: str | None = Field(default=None, validate_default=True)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2024-01-01T00:00:00Z")
        return value

    @field_validator("password")
    @classmethod
    def _password_with_username(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "username" not in info.data:
            return value  # the username itself is invalid: its error says enough
        username = info.data["username"]
        if username is not None and value is None:
            raise ValueError(
                "influx.username is set, so set the password too (write ${NAME} to take it "
                "from the environment or LoadCredential=)"
            )
        if value is not None and username is None:
            raise ValueError("needs influx.username too (HTTP basic authentication)")
        return value

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"{value.isoformat()} is not after start {start.isoformat()}")
        return value


def _check_listen(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not host:port")  # noqa: TRY004  pydantic wants ValueError
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:9464")
    return value


class MetricsConfig(_Model):
    """Prometheus metrics endpoint (off unless configured)."""

    listen: Annotated[str, pydantic.BeforeValidator(_check_listen)]


class LakeS3Config(_Model):
    """S3-compatible object storage for an ``s3://`` warehouse."""

    # None: AWS itself (the region's endpoint); else an S3-compatible server's URL.
    endpoint: HttpUrl | None = None
    region: str = "us-east-1"
    # None (both): the usual AWS chain (environment, instance metadata). The secret key and
    # the session token are secrets: write them as ${NAME}.
    access_key_id: str | None = None
    secret_access_key: str | None = Field(default=None, validate_default=True)
    session_token: str | None = None
    # Path-style requests (https://endpoint/bucket/key), what most S3-compatible servers
    # want; false: virtual-hosted style (https://bucket.endpoint/key), AWS's preference.
    path_style: bool = True

    @field_validator("secret_access_key")
    @classmethod
    def _secret_with_key_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "access_key_id" not in info.data:
            return value
        if (value is None) != (info.data["access_key_id"] is None):
            raise ValueError("set access_key_id and secret_access_key together, or neither")
        return value


class LakeConfig(_Model):
    """Publish every Parquet file to Apache Iceberg tables (off unless configured)."""

    # The Iceberg SQL catalog, a SQLAlchemy URL (sqlite:///FILE, postgresql://…: psycopg2);
    # None: sqlite:///<state_dir>/lake/catalog.db. Its password is a secret: use ${NAME}.
    catalog: str | None = None
    # A directory (relative to the file that says it) or s3://bucket/prefix;
    # None: <state_dir>/lake/warehouse.
    warehouse: Annotated[str | None, _LOCATION] = None
    s3: LakeS3Config | None = None
    # How often new and replaced files are published (and at start). Each publish with news
    # is a snapshot of the table: 5 minutes keeps them few, and the lake is for analysis.
    interval: Duration = 300.0
    # How long an older snapshot of a table stays readable (time travel, a reader in the
    # middle of a scan) before a commit forgets it; the current one is always kept. Every
    # commit costs more with every snapshot kept (pyiceberg copies the table's metadata):
    # keep keep_snapshots / interval in the hundreds at most.
    keep_snapshots: Duration = 3600.0
    # This daemon's name in shared tables: its files live under it, and it only ever replaces
    # or removes its own. None: a name made once and kept in <state_dir>/lake/site.
    site: str | None = None

    @field_validator("catalog")
    @classmethod
    def _catalog_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(
                f"{value!r} is not a SQLAlchemy URL: write sqlite:////path/catalog.db or "
                "postgresql://user:${PASSWORD}@host/db"
            )
        return value

    @field_validator("warehouse")
    @classmethod
    def _warehouse(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        if not value.startswith("s3://") or len(value) <= len("s3://"):
            raise ValueError(f"{value!r}: write a directory or s3://bucket/prefix")
        return value

    @field_validator("site")
    @classmethod
    def _site_is_path_safe(cls, value: str | None) -> str | None:
        if value is not None and not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} must start with a letter or digit and hold only letters, digits, "
                "- _ . (it names a folder in the warehouse)"
            )
        return value


class Config(_Model):
    """The whole configuration file."""

    state_dir: Path = Path("/var/lib/headlined")
    parquet_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    watchdog: bool = True
    flush_interval: Duration = 60.0
    sources: list[SourceConfig] = Field(default_factory=list)
    influx: InfluxConfig | None = None
    metrics: MetricsConfig | None = None
    lake: LakeConfig | None = None

    @property
    def parquet_path(self) -> Path:
        """Where Parquet copies of polled data go (``<state_dir>/parquet`` unless set)."""
        return self.parquet_dir if self.parquet_dir is not None else self.state_dir / "parquet"

    @property
    def database_path(self) -> Path:
        """The DuckDB file."""
        return self.state_dir / "headlined.duckdb"


class Loaded(BaseModel):
    """A valid config and what was learnt while reading it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    config: Config
    secrets: frozenset[str]
    literal_secrets: tuple[tuple[Path, str], ...] = ()
    """(file, key) of header values written in a file itself rather than through ``${NAME}``."""
    fragments: tuple[Path, ...] = ()
    """The files of ``<path>.d`` read after ``path``, in order."""

    def exposure_warning(self) -> str | None:
        """A warning when files hold literal secrets and others may read them."""
        exposed: dict[Path, list[str]] = {}
        for file, key in self.literal_secrets:
            try:
                mode = file.stat().st_mode
            except OSError:
                continue
            if mode & 0o004:
                exposed.setdefault(file, []).append(key)
        if not exposed:
            return None
        which = "; ".join(
            f"{file} is readable by every user and holds secrets in {', '.join(keys)}"
            for file, keys in exposed.items()
        )
        return (
            f"{which}: chmod o-r {'it' if len(exposed) == 1 else 'them'}, or move them to "
            "${NAME} references (environment or LoadCredential=)"
        )

    def metrics_warning(self) -> str | None:
        """A warning when the metrics endpoint (no authentication) listens beyond loopback."""
        metrics = self.config.metrics
        if metrics is None:
            return None
        host = metrics.listen.rpartition(":")[0].strip("[]")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a host name: it may resolve to any interface
        if loopback:
            return None
        return (
            f"metrics.listen {metrics.listen} may be reachable from other hosts and has no "
            "authentication: use 127.0.0.1:PORT (or ::1) and a proxy if others must scrape it"
        )


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$HEADLINED_CONFIG``, else ``/etc/headlined/headlined.yaml``."""
    env = os.environ if environ is None else environ
    return Path(env["HEADLINED_CONFIG"]) if env.get("HEADLINED_CONFIG") else DEFAULT_PATH


def fragment_dir(path: Path) -> Path:
    """Where the fragments of the config file ``path`` are: ``<path>.d``."""
    return path.with_name(path.name + ".d")


def load(path: Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read, expand, merge and validate a config file and its fragments.

    Raises :class:`ConfigError` with every problem found.
    """
    env = os.environ if environ is None else environ
    fragments, problems = _fragments(path)
    docs = [yamlsource.load(file, env) for file in (path, *fragments)]
    problems += [problem for doc in docs for problem in doc.problems]
    secrets = set().union(*(doc.secrets for doc in docs))
    if any(doc.data is None for doc in docs):  # unreadable or not YAML: nothing to validate
        raise ConfigError(_redact(problems, secrets))
    if all(doc.empty for doc in docs):
        problems.append(
            Problem(str(path), 0, "empty", "add at least one source or an influx: section")
        )
        raise ConfigError(problems)
    merged = yamlsource.merge(docs, concatenate=frozenset({"sources"}))
    if merged.problems:
        raise ConfigError(_redact(problems + merged.problems, secrets))
    _resolve_paths(merged, Config, merged.data, ())
    problems.extend(_duplicate_names(merged))
    try:
        config = Config.model_validate(merged.data)
    except pydantic.ValidationError as exc:
        problems.extend(_explain(merged, error) for error in exc.errors())
        raise ConfigError(_redact(problems, secrets)) from None
    if problems:
        raise ConfigError(_redact(problems, secrets))
    literal = []
    for loc, value in _secret_values(config):
        if value:
            secrets.add(value)
            if not merged.referenced(loc):
                doc, local = merged.locate(loc)
                literal.append((Path(doc.file), yamlsource.format_loc(local)))
    return Loaded(
        path=path,
        config=config,
        secrets=frozenset(secrets),
        literal_secrets=tuple(literal),
        fragments=tuple(fragments),
    )


def _secret_values(config: Config) -> list[tuple[Loc, str]]:
    """Where the config holds credentials, and their values: every source's and the influx
    section's header values, influx.password, the lake catalog URL's password and the S3
    secret key and session token."""
    found: list[tuple[Loc, str]] = [
        (("sources", i, "headers", name), value)
        for i, source in enumerate(config.sources)
        for name, value in source.headers.items()
    ]
    if config.influx is not None:
        found += [(("influx", "headers", name), v) for name, v in config.influx.headers.items()]
        if config.influx.password is not None:
            found.append((("influx", "password"), config.influx.password))
    lake = config.lake
    if lake is not None:
        catalog_password = urlsplit(lake.catalog).password if lake.catalog else None
        if catalog_password:
            found.append((("lake", "catalog"), catalog_password))
        if lake.s3 is not None:
            found += [
                (("lake", "s3", key), value)
                for key, value in (
                    ("secret_access_key", lake.s3.secret_access_key),
                    ("session_token", lake.s3.session_token),
                )
                if value
            ]
    return found


def _fragments(path: Path) -> tuple[list[Path], list[Problem]]:
    """The ``*.yaml`` files of ``<path>.d`` in name order (none if it does not exist)."""
    directory = fragment_dir(path)
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return [], []
    except NotADirectoryError:
        problem = "is not a directory: config fragments go in a directory, as NAME.yaml files"
        return [], [Problem(str(directory), 0, "(file)", problem)]
    except OSError as exc:
        return [], [Problem(str(directory), 0, "(file)", f"cannot read: {exc}")]
    # Hidden names are editors' lock and swap files, not config.
    chosen = [
        p
        for p in entries
        if p.name.endswith(".yaml") and not p.name.startswith(".") and not p.is_dir()
    ]
    return sorted(chosen, key=lambda p: p.name), []


def _resolve_paths(
    merged: yamlsource.Merged, model: type[BaseModel], data: dict[str, Any], loc: Loc
) -> None:
    """Make each relative path in ``data`` (``model``'s values at ``loc``) relative to the
    directory of the file it is written in, walking into nested models."""
    for name, info in model.model_fields.items():
        value = data.get(name)
        here = (*loc, name)
        classes = _classes_in(info.annotation)
        program = _PROGRAM in info.metadata and isinstance(value, str) and "/" in value
        location = _LOCATION in info.metadata and isinstance(value, str) and "://" not in value
        if isinstance(value, str) and (Path in classes or program or location):
            directory = Path(merged.file_of(here)).absolute().parent
            # normpath: `../var/state` in /srv/etc reads /srv/var/state in status and logs.
            data[name] = os.path.normpath(directory / value.strip())
        for sub in classes:
            if not issubclass(sub, BaseModel):
                continue
            if isinstance(value, dict):
                _resolve_paths(merged, sub, value, here)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        _resolve_paths(merged, sub, item, (*here, i))


def _classes_in(annotation: Any) -> set[type]:
    """The classes an annotation is made of: ``list[SourceConfig] | None`` → SourceConfig,
    NoneType."""
    args = typing.get_args(annotation)
    if args:
        return set().union(*(_classes_in(arg) for arg in args))
    return {annotation} if isinstance(annotation, type) else set()


def _redact(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    """Error messages quote values; a value that came from ``${...}`` must not be shown."""
    out = []
    for problem in problems:
        message = problem.message
        for secret in sorted(secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        out.append(Problem(problem.file, problem.line, problem.key, message))
    return out


def _duplicate_names(merged: yamlsource.Merged) -> list[Problem]:
    sources = merged.data.get("sources")
    if not isinstance(sources, list):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, source in enumerate(sources):
        name = source.get("name") if isinstance(source, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            first: Loc = ("sources", seen[name], "name")
            where = yamlsource.format_loc(merged.locate(first)[1][:-1])
            problems.append(
                merged.problem(
                    ("sources", i, "name"),
                    f"{name!r} is already the name of {where} in {merged.position(first)}; "
                    "give each source its own name",
                )
            )
        else:
            seen[name] = i
    return problems


def _explain(merged: yamlsource.Merged, error: Any) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    message: str = error["msg"]
    if kind == "extra_forbidden":
        message = "unknown key" + _suggestion(loc)
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif "input" in error and kind not in ("model_type", "list_type", "dict_type"):
        message = f"{message} (got {error['input']!r})"
    return merged.problem(loc, message)


def _suggestion(loc: tuple[str | int, ...]) -> str:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if part == "sources":
            model = SourceConfig
        elif part == "influx":
            model = InfluxConfig
        elif part == "metrics":
            model = MetricsConfig
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
