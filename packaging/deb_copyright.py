"""The .deb's copyright file: packaging/deb/copyright with the bundled distributions listed.

    python3 packaging/deb_copyright.py TEMPLATE SITE_PACKAGES > usr/share/doc/headlined/copyright

Its line ``@BUNDLED_DISTRIBUTIONS@`` becomes one line per distribution installed in
SITE_PACKAGES (headlined aside, which has its own paragraph): name, version, licence and the
licence files beside it, all read from the distributions' own metadata at build time, so the
list is true of whatever versions pip installed. Run by packaging/build-deb.
"""

from __future__ import annotations

import sys
from importlib.metadata import Distribution, distributions
from pathlib import Path, PurePath

MARKER = " @BUNDLED_DISTRIBUTIONS@\n"
OURS = "headlined"
# Where a wheel keeps licence files its metadata does not name (Metadata-Version < 2.2).
LICENCE_GLOBS = ("*.dist-info/licenses/*", "*.dist-info/LICEN[CS]E*", "*.dist-info/COPYING*")


def licence(dist: Distribution) -> str:
    """The licence as the metadata declares it: an SPDX expression where there is one."""
    meta = dist.metadata
    expression = meta.get_all("License-Expression") or []
    if expression:
        return str(expression[0])
    # Some put the licence's whole text in License:, which says nothing in one line.
    declared = [str(text).strip() for text in meta.get_all("License") or []]
    if declared and "\n" not in declared[0] and 0 < len(declared[0]) <= 60:
        return declared[0]
    classified = [
        c.rsplit(" :: ", 1)[-1]
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    if classified:
        return " / ".join(classified) + " (classifiers)"
    return "not declared: see its licence files"


def licence_files(dist: Distribution) -> list[str]:
    """The licence files in the distribution's .dist-info folder (paths in site-packages)."""
    in_info = [
        f for f in dist.files or [] if len(f.parts) > 1 and f.parts[0].endswith(".dist-info")
    ]
    named = {PurePath(name).name for name in dist.metadata.get_all("License-File") or []}
    found = [f for f in in_info if f.name in named]
    if not found:
        found = [f for f in in_info if any(f.match(pattern) for pattern in LICENCE_GLOBS)]
    return sorted(str(f) for f in found)


def bundled(site: Path) -> list[str]:
    """One copyright-file line per distribution in ``site``, sorted by name."""
    lines = []
    for dist in sorted(distributions(path=[str(site)]), key=lambda d: d.metadata["Name"].lower()):
        name = dist.metadata["Name"]
        if name.lower() == OURS:
            continue
        files = ", ".join(licence_files(dist)) or "none shipped"
        lines.append(f" {name} {dist.version}: {licence(dist)}; {files}\n")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    template, site = Path(argv[1]), Path(argv[2])
    text = template.read_text(encoding="utf-8")
    if text.count(MARKER) != 1:
        print(f"{template}: no line {MARKER.strip()} to fill in", file=sys.stderr)
        return 1
    lines = bundled(site)
    if not lines:
        print(f"{site}: no distributions found", file=sys.stderr)
        return 1
    sys.stdout.write(text.replace(MARKER, "".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
