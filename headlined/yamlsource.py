"""Read YAML files into plain Python data while remembering where every value came from.

Config validation reports errors as ``FILE:LINE: key: problem``; PyYAML's ``safe_load`` throws
the line numbers away, so we compose the node tree and convert it ourselves, keeping a map
from each value's path (``("sources", 0, "url")``) to its line. ``${NAME}`` and
``${NAME:-default}`` references are expanded here too, because that is the last point where
we still know the line. YAML syntax errors are reworded here, in plain words: PyYAML's own
("found character '\\t' that cannot start any token") says little to someone editing a file.

Several files can be read as one (:func:`merge`): the result still knows, for each value,
which file and which key in that file it came from, so an error points into the right file.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]

# ${NAME} or ${NAME:-default}; a default may hold '$' but not another ${...} (no nesting).
# Any other "${" is a mistake to report, not text to keep: `${NAME-x}` would else stay as is.
_REF = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>(?:[^}$]|\$(?!\{))*))?\}"
    r"|(?P<bad>\$\{[^}]*\}?)"
)
_TAB_INDENT = "a tab character indents this line; YAML allows only spaces"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, pointing at the line a person must edit.

    ``line`` 0: the whole file (``FILE: key: problem``); ``key`` "": a YAML syntax error,
    which belongs to no key (``FILE:LINE: problem``).
    """

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


@dataclass(slots=True)
class Document:
    """A parsed YAML document: its data, the line of every value, and what it asked for."""

    file: str
    data: Any
    """None when the file could not be read or parsed (``problems`` says why)."""
    empty: bool = False
    """The file holds no YAML document (nothing, or only comments); ``data`` is then {}."""
    lines: dict[Loc, int] = field(default_factory=dict)
    key_lines: dict[Loc, int] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    referenced: set[Loc] = field(default_factory=set)
    """Where a value used ``${NAME}`` and no default written in the file: its secret is kept
    elsewhere."""
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
    try:
        loader = yaml.SafeLoader(text)  # checks every character of the text first
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        doc.problems.append(
            Problem(
                name,
                text.count("\n", 0, exc.position) + 1,
                "",
                f"a control character (#x{char:02x}) YAML does not allow: delete it",
            )
        )
        return doc
    try:
        node = loader.get_single_node()
        data = None if node is None else _convert(node, (), doc, loader, environ)
    except yaml.MarkedYAMLError as exc:
        doc.problems.extend(_syntax_problems(exc, text, name))
    except yaml.YAMLError as exc:  # every PyYAML error with a position is handled above
        doc.problems.append(Problem(name, 1, "", f"not valid YAML: {exc}"))
    else:
        # `---` or `~` alone is a null document: as empty as a file of comments.
        doc.empty = data is None
        doc.data = {} if data is None else data
    finally:
        loader.dispose()
    return doc


# PyYAML's error as "context|problem" → whether the line to fix is where the unfinished thing
# (a quote, a bracket, a key) began rather than where the parser gave up, and what to say:
# {0} is the pattern's group, {began} that first line.
_SYNTAX: tuple[tuple[re.Pattern[str], bool, str], ...] = tuple(
    (re.compile(pattern), began, message)
    for pattern, began, message in (
        (
            r".*\|found character '(.)' that cannot start any token",
            False,
            "a value cannot start with {0!r}: put the value in quotes",
        ),
        (
            r".*\|mapping values are not allowed here",
            False,
            (
                "unexpected ':' on this line: check its indentation, put a value holding ': ' "
                "in quotes, or add the ':' missing after a key just above"
            ),
        ),
        (
            r".*\|could not find expected ':'",
            True,
            "this key has no ':' after it: write 'key: value'",
        ),
        (
            r".*quoted scalar\|.*end of stream",
            True,
            "a quoted value starts on this line and is never closed: add the closing quote",
        ),
        (
            r".*\|found unknown escape character '(.+)'",
            False,
            (
                '\\{0} is not an escape YAML knows in a "double-quoted" value: '
                "use 'single quotes', or write \\\\ for a backslash"
            ),
        ),
        (
            r"while parsing a flow sequence\|.*",
            True,
            "the [ on this line is never closed: end the list with ], with ',' between items",
        ),
        (
            r"while parsing a flow mapping\|.*",
            True,
            "the {{ on this line is never closed: end it with }}, with ',' between items",
        ),
        (
            r".*\|expected <block end>, but found '<scalar>'",
            False,
            "unexpected text after a value: put the whole value in quotes",
        ),
        (
            r".*\|expected <block end>, .*",
            False,
            (
                "this line's indentation does not fit the lines above it: line it up with "
                "the keys (or the '- ' items) it belongs with"
            ),
        ),
        (
            r".*\|found undefined alias '(.+)'",
            False,
            "*{0} repeats an anchor that is not defined: put &{0} on a value above",
        ),
        (
            r"found duplicate anchor '(.+)'; first occurrence\|.*",
            False,
            "&{0} is already defined on line {began}: rename one of them",
        ),
        (
            r".*\|but found another document",
            False,
            "a second YAML document starts here: a config file holds only one",
        ),
        (
            r".*\|could not determine a constructor for the tag '(.+)'",
            False,
            "unknown tag {0}: delete it, or put the value in quotes",
        ),
    )
)


def _syntax_problems(exc: yaml.MarkedYAMLError, text: str, name: str) -> list[Problem]:
    """PyYAML's error, said the way a person editing the file needs it, at the line to fix."""
    # PyYAML names a tag by its full form; the file says !!foo.
    problem = (exc.problem or "").replace("tag:yaml.org,2002:", "!!")
    context = exc.context or ""
    line = exc.problem_mark.line + 1 if exc.problem_mark else 1
    began = exc.context_mark.line + 1 if exc.context_mark else line
    if problem.startswith("found character '\\t'"):
        # Every tab-indented line from here on: fixing one at a time is tedious. (Earlier ones
        # were accepted, so they sit inside a block scalar, where a tab is text.)
        indented = [n for n in _tab_indented(text) if n >= line]
        if indented:
            return [Problem(name, n, "", _TAB_INDENT) for n in indented]
        return [
            Problem(
                name,
                line,
                "",
                "a tab character separates values on this line; YAML allows only spaces",
            )
        ]
    for pattern, at_start, template in _SYNTAX:
        if found := pattern.fullmatch(f"{context}|{problem}"):
            message = template.format(*found.groups(), began=began)
            return [Problem(name, began if at_start else line, "", message)]
    detail = f" ({context}, line {began})" if context else ""
    return [Problem(name, line, "", f"not valid YAML: {problem}{detail}")]


def _tab_indented(text: str) -> list[int]:
    """Numbers of the lines whose indentation holds a tab."""
    return [
        number
        for number, line in enumerate(text.splitlines(), 1)
        if "\t" in line[: len(line) - len(line.lstrip(" \t"))]
    ]


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
    from_file = False  # a default written in the file was used: that text is no secret

    def replace(match: re.Match[str]) -> str:
        nonlocal from_file
        if match["bad"] is not None:
            doc.problems.append(
                Problem(
                    doc.file,
                    doc.lines[loc],
                    format_loc(loc),
                    f"{match['bad']} is not a reference: write ${{NAME}} or ${{NAME:-default}} "
                    "(NAME of letters, digits and _; a default cannot hold ${...})",
                )
            )
            return match[0]
        name, default = match["name"], match["default"]
        resolved = lookup_reference(name, env)
        # The shell's ${NAME:-default}: the default stands in for unset and for empty alike.
        if not resolved and default is not None:
            from_file = from_file or bool(default)
            return default
        if resolved is None:
            doc.problems.append(
                Problem(
                    doc.file,
                    doc.lines[loc],
                    format_loc(loc),
                    f"${{{name}}} is not set: export it, put it in a file named {name} under "
                    f"$CREDENTIALS_DIRECTORY (LoadCredential=), or give a default: "
                    f"${{{name}:-value}}",
                )
            )
            return match[0]
        if resolved:
            doc.secrets.add(resolved)
        return resolved

    expanded: str = _REF.sub(replace, value)
    if not from_file:
        doc.referenced.add(loc)
    return expanded


@dataclass(slots=True)
class Merged:
    """Several documents read as one: the data, and where in which file each value was written."""

    data: dict[str, Any]
    origin: dict[Loc, tuple[Document, Loc]]
    """A merged path → the document and the path in it; longer paths override shorter ones.
    () maps to the first document: what no later one set comes from it."""
    problems: list[Problem] = field(default_factory=list)

    def locate(self, loc: Loc) -> tuple[Document, Loc]:
        """The document that holds the value at ``loc`` (a merged path), and its path there."""
        end = len(loc)
        while loc[:end] not in self.origin:  # stops at () at the latest
            end -= 1
        doc, local = self.origin[loc[:end]]
        return doc, (*local, *loc[end:])

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem with the value at ``loc``, named as it is written in its own file."""
        doc, local = self.locate(loc)
        return Problem(doc.file, doc.line_of(local), format_loc(local), message)

    def position(self, loc: Loc) -> str:
        """``FILE:LINE`` of the value at ``loc``, to point at a second place in a message."""
        doc, local = self.locate(loc)
        return f"{doc.file}:{doc.line_of(local)}"

    def file_of(self, loc: Loc) -> str:
        """The file that holds the value at ``loc``."""
        return self.locate(loc)[0].file

    def referenced(self, loc: Loc) -> bool:
        """Whether the value at ``loc`` used ``${NAME}`` and no default written in its file."""
        doc, local = self.locate(loc)
        return local in doc.referenced


def merge(docs: Sequence[Document], concatenate: frozenset[str] = frozenset()) -> Merged:
    """Read ``docs`` as one, later over earlier: mappings merge key by key, any other value
    is replaced, except top-level lists named in ``concatenate``, which are joined in order.

    Every document must have been parsed (``data`` not None).
    """
    main = docs[0]
    merged = Merged({}, {(): (main, ())})
    for doc in docs:
        if not isinstance(doc.data, dict):
            merged.problems.append(Problem(doc.file, 1, "(top level)", "must be a mapping of keys"))
            continue
        if doc is main:
            merged.data = copy.deepcopy(doc.data)
            continue
        for key, value in doc.data.items():
            have = merged.data.get(key)
            if key in concatenate and isinstance(have, list) and isinstance(value, list):
                for i, item in enumerate(value):
                    merged.origin[(key, len(have))] = (doc, (key, i))
                    have.append(copy.deepcopy(item))
            else:
                _merge_value(merged, merged.data, key, value, loc=(), doc=doc)
    return merged


def _merge_value(
    merged: Merged, target: dict[str, Any], key: str, value: Any, *, loc: Loc, doc: Document
) -> None:
    """Put ``doc``'s ``value`` at ``target[key]`` (``loc`` is ``target``'s merged path)."""
    here = (*loc, key)
    have = target.get(key)
    if isinstance(have, dict) and isinstance(value, dict):
        for sub, sub_value in value.items():
            _merge_value(merged, have, sub, sub_value, loc=here, doc=doc)
        return
    target[key] = copy.deepcopy(value)
    # Whatever was under `here` before came from an earlier file and is gone now.
    for stale in [k for k in merged.origin if len(k) > len(here) and k[: len(here)] == here]:
        del merged.origin[stale]
    merged.origin[here] = (doc, here)
