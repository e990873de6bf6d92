"""The configuration file: typed, validated, with every error pointing at its line.

Validation is pydantic's (it reports every error at once, with a path to the value); we map
each path back to a YAML line through :mod:`headlined.yamlsource`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from headlined import yamlsource
from headlined.yamlsource import Problem

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

    inspect: str = "influx_inspect"
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
    chunk: Duration = 7 * 86400.0
    output_dir: Path = Path("/var/lib/headlined/influx")

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2024-01-01T00:00:00Z")
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
    literal_secrets: tuple[str, ...] = ()
    """Header values written in the file itself rather than through ``${NAME}``."""

    def exposure_warning(self) -> str | None:
        """A warning when the file holds literal secrets and others may read it."""
        if not self.literal_secrets:
            return None
        try:
            mode = self.path.stat().st_mode
        except OSError:
            return None
        if not mode & 0o004:
            return None
        return (
            f"{self.path} is readable by every user and holds secrets in "
            f"{', '.join(self.literal_secrets)}: chmod o-r it, or move them to "
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


def load(path: Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read, expand and validate a config file; raise :class:`ConfigError` with every problem."""
    doc = yamlsource.load(path, environ)
    problems = list(doc.problems)
    if doc.data is None and problems:
        raise ConfigError(problems)
    if not isinstance(doc.data, dict):
        problems.append(Problem(doc.file, 1, "(top level)", "must be a mapping of keys"))
        raise ConfigError(problems)
    problems.extend(_duplicate_names(doc))
    try:
        config = Config.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        problems.extend(_explain(doc, error) for error in exc.errors())
        raise ConfigError(_redact(problems, doc.secrets)) from None
    if problems:
        raise ConfigError(_redact(problems, doc.secrets))
    secrets = set(doc.secrets)
    literal = []
    for i, source in enumerate(config.sources):
        secrets.update(v for v in source.headers.values() if v)
        literal += [
            yamlsource.format_loc(("sources", i, "headers", name))
            for name, value in source.headers.items()
            if value and ("sources", i, "headers", name) not in doc.referenced
        ]
    return Loaded(
        path=path, config=config, secrets=frozenset(secrets), literal_secrets=tuple(literal)
    )


def _redact(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    """Error messages quote values; a value that came from ``${...}`` must not be shown."""
    out = []
    for problem in problems:
        message = problem.message
        for secret in sorted(secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        out.append(Problem(problem.file, problem.line, problem.key, message))
    return out


def _duplicate_names(doc: yamlsource.Document) -> list[Problem]:
    sources = doc.data.get("sources")
    if not isinstance(sources, list):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, source in enumerate(sources):
        name = source.get("name") if isinstance(source, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            loc = ("sources", i, "name")
            problems.append(
                Problem(
                    doc.file,
                    doc.line_of(loc),
                    yamlsource.format_loc(loc),
                    f"{name!r} is already the name of sources[{seen[name]}]",
                )
            )
        else:
            seen[name] = i
    return problems


def _explain(doc: yamlsource.Document, error: Any) -> Problem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
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
    return Problem(doc.file, doc.line_of(loc), yamlsource.format_loc(loc), message)


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
