"""Read a YAML file into plain Python data while remembering where every value came from.

Config validation reports errors as ``FILE:LINE: key: problem``; PyYAML's ``safe_load`` throws
the line numbers away, so we compose the node tree and convert it ourselves, keeping a map
from each value's path (``("sources", 0, "url")``) to its line. ``${NAME}`` references are
expanded here too, because that is the last point where we still know the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, pointing at the line a person must edit."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


@dataclass(slots=True)
class Document:
    """A parsed YAML document: its data, the line of every value, and what it asked for."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    key_lines: dict[Loc, int] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    referenced: set[Loc] = field(default_factory=set)
    """Where a value used ``${NAME}``: the secret comes from elsewhere, not the file."""
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int:
        """The line of the value at ``loc``, or of its nearest ancestor that exists."""
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            # A key's own line reads better than its block value's first line.
            if prefix in self.key_lines:
                return self.key_lines[prefix]
            if prefix in self.lines:
                return self.lines[prefix]
        return 1


def format_loc(loc: Loc) -> str:
    """``("sources", 0, "url")`` → ``sources[0].url``: how a person would name the key."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def lookup_reference(name: str, environ: Mapping[str, str]) -> str | None:
    """Resolve ``${name}``: the environment first, then systemd's credentials directory."""
    if name in environ:
        return environ[name]
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / name
        if path.is_file():
            # A credential file written by `echo` ends in a newline nobody means as data.
            return path.read_text(encoding="utf-8").removesuffix("\n")
    return None


def load(path: Path, environ: Mapping[str, str] | None = None) -> Document:
    """Read and expand a YAML file. Problems are collected in the result, never raised."""
    env = os.environ if environ is None else environ
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        doc = Document(name, None)
        doc.problems.append(Problem(name, 1, "(file)", f"cannot read: {exc}"))
        return doc
    return loads(text, name, env)


def loads(text: str, name: str, environ: Mapping[str, str]) -> Document:
    """Like :func:`load`, from text; ``name`` is what error messages call the file."""
    doc = Document(name, None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc.data = {} if node is None else _convert(node, (), doc, loader, environ)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or str(exc)
        doc.problems.append(Problem(name, line, "(yaml)", problem))
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(name, 1, "(yaml)", str(exc)))
    finally:
        loader.dispose()
    return doc


def _convert(
    node: yaml.Node, loc: Loc, doc: Document, loader: yaml.SafeLoader, env: Mapping[str, str]
) -> Any:
    doc.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges into plain pairs
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                doc.problems.append(
                    Problem(
                        doc.file,
                        key_node.start_mark.line + 1,
                        format_loc(loc),
                        f"key {key!r} must be a string",
                    )
                )
                continue
            child = (*loc, key)
            doc.key_lines[child] = key_node.start_mark.line + 1
            if key in out:
                doc.problems.append(
                    Problem(
                        doc.file,
                        key_node.start_mark.line + 1,
                        format_loc(child),
                        "duplicate key (the earlier one would be silently ignored)",
                    )
                )
            out[key] = _convert(value_node, child, doc, loader, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*loc, i), doc, loader, env) for i, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "${" in value:
        return _expand(value, loc, doc, env)
    return value


def _expand(value: str, loc: Loc, doc: Document, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        resolved = lookup_reference(match.group(1), env)
        if resolved is None:
            doc.problems.append(
                Problem(
                    doc.file,
                    doc.lines[loc],
                    format_loc(loc),
                    f"${{{match.group(1)}}} is not set: export it, or put it in a file "
                    f"named {match.group(1)} under $CREDENTIALS_DIRECTORY (LoadCredential=)",
                )
            )
            return match.group(0)
        if resolved:
            doc.secrets.add(resolved)
        return resolved

    doc.referenced.add(loc)
    expanded: str = _REF.sub(replace, value)
    return expanded
