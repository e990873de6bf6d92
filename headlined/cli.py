"""The ``headlined`` command line (INTERFACE §1). Exits 0 ok, 1 failure, 2 bad usage or config."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from headlined import __version__, config, daemon

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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
    demo = commands.add_parser(
        "demo-feed", help="serve simulated rolling-window feeds on loopback (for trying it out)"
    )
    demo.add_argument("--port", type=int, default=8787, help="TCP port on 127.0.0.1 (8787)")
    return parser


def _check_config(path: Path) -> int:
    try:
        loaded = config.load(path)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    cfg = loaded.config
    print(
        f"{path}: ok ({len(cfg.sources)} sources"
        f"{', influx export' if cfg.influx else ''}; state in {cfg.state_dir})"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``headlined`` console script."""
    args = build_parser().parse_args(argv)
    path: Path = getattr(args, "config", None) or config.default_path()
    if args.command == "check-config":
        return _check_config(path)
    if args.command == "run":
        return daemon.run(path)
    if args.command == "demo-feed":
        from headlined import demofeed  # noqa: PLC0415  only this command needs the simulator

        demofeed.run_demo(port=args.port)
        return EXIT_OK
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
