"""The ``headlined`` command line (INTERFACE §1). Exits 0 ok, 1 failure, 2 bad usage or config.

Each command imports what it uses when it runs: importing everything up front cost every
command about 0.5 s of start-up (pydantic and the config models, DuckDB, httpx, structlog).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from headlined import __version__

if TYPE_CHECKING:
    from headlined import config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# At exit the interpreter's cycle collector walks every object still alive (some 40,000:
# modules, pydantic's and DuckDB's internals) several times, 0.1-0.2 s after the work is done.
# It skips frozen objects. Nothing is lost: the OS frees the memory, and the commands close
# their files, connections and sockets themselves rather than leave it to finalizers.
atexit.register(gc.freeze)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="config file (default: $HEADLINED_CONFIG, else /etc/headlined/headlined.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="headlined",
        description="Keeps rolling-window JSON feeds and InfluxDB 1.x history in DuckDB/Parquet.",
    )
    parser.add_argument("--version", action="version", version=f"headlined {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon in the foreground (systemd ExecStart)")
    _config_arg(run)
    check = commands.add_parser("check-config", help="validate the config file")
    _config_arg(check)
    probe = commands.add_parser(
        "probe", help="poll each source once, store nothing, and say whether it is usable"
    )
    _config_arg(probe)
    probe.add_argument("sources", nargs="*", metavar="SOURCE", help="only these (default: all)")
    probe.add_argument("--json", action="store_true", help="one JSON object per source")
    status = commands.add_parser(
        "status", help="per source and per export figures; works while the daemon runs"
    )
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    sql = commands.add_parser(
        "query", help="read-only SQL over everything stored; works while the daemon runs"
    )
    _config_arg(sql)
    sql.add_argument("sql", metavar="SQL")
    output = sql.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per row")
    output.add_argument("--csv", action="store_true", help="CSV with a header line")
    sql.add_argument("--limit", type=int, default=100_000, help="most rows to print (100000)")
    export = commands.add_parser(
        "export", help="run the configured InfluxDB export now, with a progress bar"
    )
    _config_arg(export)
    export.add_argument("--database", metavar="DB", help="only this database")
    verify = commands.add_parser(
        "verify",
        help="count points per series per day in the Parquet and in InfluxDB; list differences",
    )
    _config_arg(verify)
    verify.add_argument("--database", metavar="DB", help="only this database")
    verify.add_argument("--json", action="store_true", help="one JSON object per difference")
    cov = commands.add_parser(
        "coverage",
        help="is the history complete? per series and per source: span, cadence, coverage, holes",
    )
    _config_arg(cov)
    cov.add_argument("--json", action="store_true", help="one JSON object per series or source")
    cov.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a self-contained HTML report"
    )
    cov.add_argument("--database", metavar="DB", help="only this database's series")
    cov.add_argument("--measurement", metavar="M", help="only this measurement's series")
    cov.add_argument("--source", metavar="S", help="only this polled source")
    cov.add_argument("--since", metavar="T", help="from T: 2024-10-01, RFC 3339, or 30d (ago)")
    cov.add_argument("--until", metavar="T", help="until T (exclusive), as --since")
    imp = commands.add_parser(
        "import",
        help="land earlier Parquet exports (raw line protocol or influx_tools) beside the export",
    )
    _config_arg(imp)
    imp.add_argument("--database", metavar="D", required=True, help="the InfluxDB database")
    imp.add_argument(
        "--retention-policy",
        metavar="RP",
        help="its retention policy (default: the files' own, else the only one exported, "
        "else autogen)",
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE", help="Parquet files")
    conv = commands.add_parser(
        "convert", help="a line-protocol file (plain or .gz) to Parquet, a folder per measurement"
    )
    conv.add_argument("input", type=Path, metavar="INPUT")
    conv.add_argument("outdir", type=Path, metavar="OUTDIR")
    conv.add_argument(
        "--precision",
        choices=["ns", "us", "ms", "s"],
        default="ns",
        help="unit of the timestamps in INPUT (ns)",
    )
    demo = commands.add_parser(
        "demo-feed", help="serve simulated rolling-window feeds on loopback (for trying it out)"
    )
    demo.add_argument("--port", type=int, default=8787, help="TCP port on 127.0.0.1 (8787)")
    return parser


def _load(path: Path | None) -> config.Loaded | None:
    """The config at ``path`` (None: the default one), or None once its problems are printed."""
    from headlined import config  # noqa: PLC0415  start-up time: pydantic, not for convert

    try:
        return config.load(path or config.default_path())
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _status(path: Path | None, as_json: bool) -> int:
    from headlined import control, query, statequery, status  # noqa: PLC0415  start-up time: DuckDB

    loaded = _load(path)
    if loaded is None:
        return EXIT_USAGE
    cfg = loaded.config
    try:
        document = statequery.daemon_or_file(
            cfg, {"cmd": "status"}, lambda conn: status.offline_snapshot(conn, cfg)
        )
    except (control.ControlError, query.QueryError, OSError) as exc:
        print(f"headlined status: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(status.to_json(document) if as_json else status.render(document))
    return EXIT_OK


def _probe(path: Path | None, names: list[str], as_json: bool) -> int:
    import asyncio  # noqa: PLC0415  start-up time: only this command and run need them
    import json  # noqa: PLC0415  as above

    from headlined.poll import fetch, probe  # noqa: PLC0415  as above

    loaded = _load(path)
    if loaded is None:
        return EXIT_USAGE
    sources = [s for s in loaded.config.sources if not names or s.name in names]
    unknown = sorted(set(names) - {s.name for s in loaded.config.sources})
    if unknown:
        print(f"{loaded.path}: no source named {', '.join(unknown)}", file=sys.stderr)
        return EXIT_USAGE
    if not sources:
        print(f"{loaded.path}: no sources to probe", file=sys.stderr)
        return EXIT_USAGE

    async def probe_all() -> list[probe.Probe]:
        async with fetch.client() as client:
            return list(await asyncio.gather(*(probe.probe(client, s) for s in sources)))

    probes = asyncio.run(probe_all())
    if as_json:
        for one in probes:
            print(json.dumps(one.to_json(), ensure_ascii=False))
    else:
        print(probe.render(probes))
    return EXIT_OK if all(p.usable for p in probes) else EXIT_FAILURE


def _query(path: Path | None, sql: str, fmt: str, limit: int) -> int:
    from headlined import control, query, statequery  # noqa: PLC0415  start-up time: DuckDB

    loaded = _load(path)
    if loaded is None:
        return EXIT_USAGE
    cfg = loaded.config
    influx_dir = cfg.influx.output_dir if cfg.influx else None
    try:
        reply = statequery.daemon_or_file(
            cfg,
            {"cmd": "query", "sql": sql, "limit": limit},
            lambda conn: asdict(query.run(conn, sql, influx_dir, limit)),
        )
    except (control.ControlError, query.QueryError, OSError) as exc:
        print(f"headlined query: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    result = query.Result(**reply)
    query.write(result, fmt, sys.stdout)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _convert(source: Path, outdir: Path, precision: str) -> int:
    from headlined import logs  # noqa: PLC0415  as above
    from headlined.influx import convert  # noqa: PLC0415  DuckDB work only this command needs

    logs.configure("info")  # the same layout and level as every other command

    name = source.name.removesuffix(".gz")
    for extension in (".lp", ".txt", ".line", ".influx"):
        name = name.removesuffix(extension)
    stem = convert.path_segment(name) if name and not name.startswith(".") else "part-00000"
    try:
        result = convert.convert(source, outdir, precision=precision, file_stem=stem)
    except (convert.ConvertError, OSError) as exc:
        print(f"headlined convert: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for (_db, _rp, measurement), rows in sorted(result.measurements.items()):
        print(f"{measurement}: {rows} rows")
    print(f"{result.lines} lines, {result.points} points, {len(result.files)} files in {outdir}")
    if result.rejected:
        print(
            f"headlined convert: {result.rejected} lines rejected, see "
            f"{outdir / '_rejected' / (stem + '.txt')}",
            file=sys.stderr,
        )
    return EXIT_OK


def _check_config(path: Path | None) -> int:
    loaded = _load(path)
    if loaded is None:
        return EXIT_USAGE
    cfg = loaded.config
    if cfg.lake is not None:
        from headlined.lake import missing_dependency  # noqa: PLC0415  only with a lake

        if (missing := missing_dependency()) is not None:
            print(f"{loaded.path}: {missing}", file=sys.stderr)
            return EXIT_USAGE
    for warning in (loaded.exposure_warning(), loaded.metrics_warning()):
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{loaded.path}: ok ({len(cfg.sources)} sources"
        f"{', influx export' if cfg.influx else ''}{', lake' if cfg.lake else ''};"
        f" state in {cfg.state_dir})"
    )
    for fragment in loaded.fragments:  # so a fragment never applies unnoticed
        print(f"  + {fragment}")
    return EXIT_OK


def _export(path: Path | None, database: str | None) -> int:
    from headlined.influx.spawn import Early  # noqa: PLC0415  the standard library only

    # The local helper starts first: it gets ready while the config and the imports below
    # load (~0.2 s); the export takes it if the config wants it so, else it is stopped.
    with Early() as early:
        from headlined.influx import cli as export_cli  # noqa: PLC0415  start-up time: DuckDB, tqdm, the converter

        loaded = _load(path)
        return EXIT_USAGE if loaded is None else export_cli.run(loaded, database, early)


def _import(path: Path | None, database: str, rp: str | None, files: list[Path]) -> int:
    from headlined.influx import importcli  # noqa: PLC0415  start-up time: DuckDB, the converter

    loaded = _load(path)
    return EXIT_USAGE if loaded is None else importcli.run(loaded, database, rp, files)


def _verify(path: Path | None, database: str | None, as_json: bool) -> int:
    from headlined.influx.verify import command  # noqa: PLC0415  start-up time: DuckDB, httpx, tqdm

    loaded = _load(path)
    return EXIT_USAGE if loaded is None else command.run(loaded, database, as_json)


def _coverage(path: Path | None, args: argparse.Namespace) -> int:
    from headlined.coverage import command  # noqa: PLC0415  start-up time: DuckDB, pydantic

    loaded = _load(path)
    if loaded is None:
        return EXIT_USAGE
    return command.run(
        loaded,
        command.Options(
            as_json=args.json,
            html=args.html,
            database=args.database,
            measurement=args.measurement,
            source=args.source,
            since=args.since,
            until=args.until,
        ),
    )


def _run(path: Path | None) -> int:
    # The daemon's imports (httpx, prometheus-client, the pollers) would slow every other
    # command's start.
    from headlined import config, daemon  # noqa: PLC0415

    return daemon.run(path or config.default_path())


def _demo_feed(port: int) -> int:
    from headlined.demo import run as demofeed  # noqa: PLC0415  only this command needs the simulator

    demofeed.run_demo(port=port)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``headlined`` console script."""
    args = build_parser().parse_args(argv)
    path: Path | None = getattr(args, "config", None)
    commands: dict[str, Callable[[], int]] = {
        "check-config": lambda: _check_config(path),
        "probe": lambda: _probe(path, args.sources, args.json),
        "run": lambda: _run(path),
        "status": lambda: _status(path, args.json),
        "query": lambda: _query(
            path, args.sql, "json" if args.json else "csv" if args.csv else "table", args.limit
        ),
        "export": lambda: _export(path, args.database),
        "coverage": lambda: _coverage(path, args),
        "verify": lambda: _verify(path, args.database, args.json),
        "import": lambda: _import(path, args.database, args.retention_policy, args.files),
        "convert": lambda: _convert(args.input, args.outdir, args.precision),
        "demo-feed": lambda: _demo_feed(args.port),
    }
    try:
        return commands[args.command]()
    except KeyboardInterrupt:
        if args.command == "run":
            raise  # the daemon stops itself on SIGINT; this is a second Ctrl-C
        # Ctrl-C is how a person stops a long query, export or feed: no traceback for it.
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
