"""``headlined import``: the command's output and exit code (the work is importer.py's)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from headlined import config, logs
from headlined.influx import importer
from headlined.influx.importlayout import ImportInputError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def run(
    loaded: config.Loaded, database: str, retention_policy: str | None, files: Sequence[Path]
) -> int:
    """Import ``files`` into the configured ``influx.output_dir``; 0 ok, 1 failed, 2 usage."""
    logs.configure("warning")  # the command prints what it does; the log only what goes wrong
    if loaded.config.influx is None:
        print(
            f"headlined import: {loaded.path} has no influx: section, so no output_dir to "
            "import into",
            file=sys.stderr,
        )
        return EXIT_USAGE
    output_dir = loaded.config.influx.output_dir
    try:
        result = importer.run_import(
            output_dir, database, files, retention_policy=retention_policy, say=print
        )
    except ImportInputError as exc:
        print(f"headlined import: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (importer.ImportDataError, OSError) as exc:
        print(f"headlined import: {exc}; nothing was imported", file=sys.stderr)
        return EXIT_FAILURE
    for measurement, kinds in sorted(result.widened.items()):
        for column, kind in sorted(kinds.items()):
            print(
                f"headlined import: {measurement}.{column} holds {kind} values here, another "
                f"type in the exported files: the measurement's view reads it as {kind}",
                file=sys.stderr,
            )
    for path in result.removed:
        print(f"removed {path} (its points are all held by other files now)")
    print(
        f"{sum(result.points.values())} points imported into {len(result.files)} files under "
        f"{output_dir} ({database}/{result.retention_policy}, import-{result.digest}); "
        f"{sum(result.skipped.values())} held already or given twice"
    )
    if result.rejected:
        print(
            f"headlined import: {result.rejected} lines rejected, see {result.rejected_file}",
            file=sys.stderr,
        )
    return EXIT_OK
