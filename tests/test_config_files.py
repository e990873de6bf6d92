"""Config files as an operator writes them: ${NAME:-default}, <config>.d fragments, YAML
mistakes in plain words, empty files, paths relative to their file, and the full example."""

from __future__ import annotations

import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import BaseModel

from headlined import cli, config, yamlsource

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "etc" / "headlined.example.yaml"
EMPTY = "empty: add at least one source or an influx: section"
TAB = "a tab character indents this line; YAML allows only spaces"
MISSING = (
    "${{{0}}} is not set: export it, put it in a file named {0} under $CREDENTIALS_DIRECTORY "
    "(LoadCredential=), or give a default: ${{{0}:-value}}"
)
EXPOSED = (
    "warning: {0} is readable by every user and holds secrets in {1}: chmod o-r it, or move "
    "them to ${{NAME}} references (environment or LoadCredential=)\n"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return path


def source(name: str, url: str = "http://127.0.0.1:1/feed") -> str:
    """One item of a ``sources:`` list, three lines."""
    return f"  - name: {name}\n    url: {url}\n    key: [id]\n"


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``headlined check-config -c path``: exit code, stdout, stderr."""
    code = cli.main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# ${NAME:-default}


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:8787/feed"),
        ({"FEED_HOST": ""}, "http://127.0.0.1:8787/feed"),
        ({"FEED_HOST": "feeds.example"}, "http://feeds.example:8787/feed"),
    ],
    ids=["unset", "empty", "set"],
)
def test_default_stands_in_for_an_unset_or_empty_variable(
    tmp_path: Path, environ: dict[str, str], url: str
) -> None:
    path = write(
        tmp_path / "h.yaml", "sources:\n" + source("a", "http://${FEED_HOST:-127.0.0.1}:8787/feed")
    )
    assert config.load(path, environ).config.sources[0].url == url


def test_credential_file_wins_over_the_default(tmp_path: Path) -> None:
    creds = write(tmp_path / "creds" / "FEED_HOST", "cred.example\n").parent
    path = write(tmp_path / "h.yaml", "sources:\n" + source("a", "http://${FEED_HOST:-x}/feed"))
    loaded = config.load(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert loaded.config.sources[0].url == "http://cred.example/feed"
    assert "cred.example" in loaded.secrets


def test_variables_are_secrets_and_literal_defaults_are_not(tmp_path: Path) -> None:
    url = "http://${FEED_HOST:-127.0.0.1}:${FEED_PORT:-8787}/feed"
    path = write(tmp_path / "h.yaml", "sources:\n" + source("a", url))
    loaded = config.load(path, {"FEED_HOST": "hidden.example"})
    assert loaded.config.sources[0].url == "http://hidden.example:8787/feed"
    assert "hidden.example" in loaded.secrets
    # Written in the file, so no secret: else every "8787" in the logs would be starred out.
    assert "8787" not in loaded.secrets


def test_config_errors_star_out_variables_but_show_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_HOST", "tok-98765")
    monkeypatch.delenv("FEED_PATH", raising=False)
    path = write(
        tmp_path / "h.yaml",
        "sources:\n" + source("a", "ftp://${FEED_HOST:-x}/${FEED_PATH:-in-file}"),
    )
    assert check(path, capsys) == (
        2,
        "",
        (
            f"{path}:3: sources[0].url: 'ftp://***/in-file' must be an http:// or https:// URL "
            "with a host\n"
        ),
    )


def test_variable_without_default_must_be_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEED_TOKEN", raising=False)
    path = write(
        tmp_path / "h.yaml",
        "sources:\n" + source("a") + "    headers:\n      X-Token: ${FEED_TOKEN}\n",
    )
    assert check(path, capsys) == (
        2,
        "",
        f"{path}:6: sources[0].headers.X-Token: {MISSING.format('FEED_TOKEN')}\n",
    )


@pytest.mark.parametrize(
    ("written", "named"),
    [
        ("${FEED_TOKEN-x}", "${FEED_TOKEN-x}"),  # the shell's "unset only" form: not supported
        ("${FEED TOKEN}", "${FEED TOKEN}"),
        ("${FEED_TOKEN:-${OTHER}}", "${FEED_TOKEN:-${OTHER}"),  # no nesting
    ],
)
def test_malformed_reference_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, named: str
) -> None:
    path = write(
        tmp_path / "h.yaml",
        "sources:\n" + source("a") + f"    headers:\n      X-Token: '{written}'\n",
    )
    assert check(path, capsys) == (
        2,
        "",
        (
            f"{path}:6: sources[0].headers.X-Token: {named} is not a reference: write ${{NAME}} "
            "or ${NAME:-default} (NAME of letters, digits and _; a default cannot hold ${...})\n"
        ),
    )


def test_literal_default_in_a_header_is_a_secret_written_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEED_TOKEN", raising=False)
    path = write(
        tmp_path / "h.yaml",
        "sources:\n"
        + source("a")
        + "    headers:\n      Authorization: Bearer ${FEED_TOKEN:-zq9-fallback}\n",
    )
    path.chmod(0o644)
    warning = EXPOSED.format(path, "sources[0].headers.Authorization")
    assert check(path, capsys) == (
        0,
        f"{path}: ok (1 sources; state in /var/lib/headlined)\n",
        warning,
    )
    monkeypatch.setenv("FEED_TOKEN", "from-env")  # the default unused: nothing in the file
    assert check(path, capsys)[::2] == (0, "")


# YAML syntax and empty files

SYNTAX = [
    ("tab indentation", "sources:\n\t- name: a\n\t  url: http://x/\n", [(2, TAB), (3, TAB)]),
    (
        "tab after a key",
        "log_level:\tinfo\n",
        [(1, "a tab character separates values on this line; YAML allows only spaces")],
    ),
    (
        "unclosed list",
        "state_dir: [unclosed\nlog_level: info\n",
        [(1, "the [ on this line is never closed: end the list with ], with ',' between items")],
    ),
    (
        "unclosed quote",
        'state_dir: "/var/lib\nlog_level: info\n',
        [(1, "a quoted value starts on this line and is never closed: add the closing quote")],
    ),
    (
        "key without colon",
        "sources:\n  - name: a\n    url\n    key: [id]\n",
        [(3, "this key has no ':' after it: write 'key: value'")],
    ),
    (
        "indentation",
        "influx:\n  data_dir: /x\n wal_dir: /y\n",
        [
            (
                3,
                (
                    "this line's indentation does not fit the lines above it: line it up with the "
                    "keys (or the '- ' items) it belongs with"
                ),
            )
        ],
    ),
    (
        "colon in a value",
        "sources:\n" + source("a") + "    records: a: b\n",
        [
            (
                5,
                (
                    "unexpected ':' on this line: check its indentation, put a value holding ': ' "
                    "in quotes, or add the ':' missing after a key just above"
                ),
            )
        ],
    ),
    (
        "reserved character",
        "log_level: @info\n",
        [(1, "a value cannot start with '@': put the value in quotes")],
    ),
    (
        "two documents",
        "log_level: info\n---\nwatchdog: true\n",
        [(2, "a second YAML document starts here: a config file holds only one")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_yaml_mistakes_in_plain_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[tuple[int, str]]
) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(text)
    errors = "".join(f"{path}:{line}: {message}\n" for line, message in expected)
    assert check(path, capsys) == (2, "", errors)


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# nothing yet\n#state_dir: /srv/headlined\n", "---\n"],
    ids=["nothing", "blank lines", "only comments", "null document"],
)
def test_empty_config_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(text)
    assert check(path, capsys) == (2, "", f"{path}: {EMPTY}\n")


# <config>.d fragments


def test_fragments_are_merged_in_file_name_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = write(
        tmp_path / "h.yaml",
        """\
        log_level: info
        sources:
          - name: a
            url: http://127.0.0.1:1/a
            key: [id]
        influx:
          data_dir: /srv/influx/data
          chunk: 1d
        """,
    )
    fragments = tmp_path / "h.yaml.d"
    late = write(fragments / "20-late.yaml", "log_level: warning\nsources:\n" + source("c"))
    early = write(
        fragments / "10-early.yaml",
        "log_level: debug\nsources:\n"
        + source("b")
        + "influx:\n  chunk: 2d\n  output_dir: /srv/out\n",
    )
    # Not fragments: an editor's hidden file, dpkg's leftovers, notes.
    for other in (".#10-early.yaml", "30-old.yaml.dpkg-old", "README"):
        write(fragments / other, "not: [yaml")
    cfg = config.load(main, {}).config
    assert [s.name for s in cfg.sources] == ["a", "b", "c"]
    assert cfg.log_level == "warning"  # 20- over 10- over the file itself
    assert cfg.influx is not None
    assert cfg.influx.data_dir == Path("/srv/influx/data")  # kept: merged key by key
    assert cfg.influx.chunk == 2 * 86400
    assert cfg.influx.output_dir == Path("/srv/out")
    assert check(main, capsys) == (
        0,
        (
            f"{main}: ok (3 sources, influx export; state in /var/lib/headlined)\n"
            f"  + {early}\n  + {late}\n"
        ),
        "",
    )


def test_source_name_used_in_two_files_names_both_places(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = write(tmp_path / "h.yaml", "sources:\n" + source("a"))
    fragment = write(
        tmp_path / "h.yaml.d" / "10-more.yaml", "sources:\n" + source("b") + source("a")
    )
    assert check(main, capsys) == (
        2,
        "",
        (
            f"{fragment}:5: sources[1].name: 'a' is already the name of sources[0] in {main}:2; "
            "give each source its own name\n"
        ),
    )


FRAGMENT_MISTAKES = [
    ("unknown key", "log_levle: debug\n", "1: log_levle: unknown key (did you mean 'log_level'?)"),
    (
        "bad value in a source",
        "sources:\n" + source("b") + "    window: 0\n",
        "5: sources[0].window: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "missing key in a source",
        "sources:\n  - name: b\n    key: [id]\n",
        "2: sources[0].url: required key is missing",
    ),
    (
        "bad value merged into influx",
        "influx:\n  chunk: 5x\n",
        "2: influx.chunk: '5x' is not a duration: use 500ms, 5s, 2m, 1h, 1d (or 1h30m)",
    ),
    ("yaml syntax", "sources:\n\t- name: b\n", f"2: {TAB}"),
    ("not a mapping", "- b\n", "1: (top level): must be a mapping of keys"),
    ("sources not a list", "sources:\n  name: b\n", "1: sources: Input should be a valid list"),
]


@pytest.mark.parametrize(
    ("text", "error"),
    [c[1:] for c in FRAGMENT_MISTAKES],
    ids=[c[0] for c in FRAGMENT_MISTAKES],
)
def test_errors_in_a_fragment_point_into_the_fragment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str
) -> None:
    main = write(tmp_path / "h.yaml", "sources:\n" + source("a") + "influx:\n  chunk: 1d\n")
    fragment = write(tmp_path / "h.yaml.d" / "10-b.yaml", text)
    assert check(main, capsys) == (2, "", f"{fragment}:{error}\n")


def test_fragments_may_hold_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = write(tmp_path / "h.yaml", "# sources: in h.yaml.d/\n")
    write(tmp_path / "h.yaml.d" / "feeds.yaml", "sources:\n" + source("a"))
    write(tmp_path / "h.yaml.d" / "off.yaml", "#sources:\n#  - name: b\n")  # switched off
    code, out, err = check(main, capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"{main}: ok (1 sources;")


def test_empty_file_with_only_empty_fragments_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = write(tmp_path / "h.yaml", "")
    write(tmp_path / "h.yaml.d" / "off.yaml", "# nothing\n")
    assert check(main, capsys) == (2, "", f"{main}: {EMPTY}\n")


def test_fragment_directory_that_is_a_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = write(tmp_path / "h.yaml", "sources:\n" + source("a"))
    directory = write(tmp_path / "h.yaml.d", "sources: []\n")
    assert check(main, capsys) == (
        2,
        "",
        (
            f"{directory}: (file): is not a directory: config fragments go in a directory, "
            "as NAME.yaml files\n"
        ),
    )


# Relative paths


def test_relative_paths_are_relative_to_the_file_not_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path.resolve()
    conf = base / "conf"
    write(
        conf / "h.yaml",
        """\
        state_dir: state
        parquet_dir: ../data/parquet
        sources: []
        influx:
          inspect: bin/influx_inspect
          data_dir: ./influx/data
          wal_dir: /abs/wal
          meta_dir: influx/meta
          inspect_socket: run/inspect.sock
          output_dir: ../data/influx
        """,
    )
    (base / "elsewhere").mkdir()
    monkeypatch.chdir(base / "elsewhere")
    relative = Path("../conf/h.yaml")
    cfg = config.load(relative, {}).config
    assert cfg.state_dir == conf / "state"
    assert cfg.parquet_path == base / "data" / "parquet"
    assert cfg.influx is not None
    assert cfg.influx.inspect == str(conf / "bin" / "influx_inspect")
    assert cfg.influx.data_dir == conf / "influx" / "data"
    assert cfg.influx.wal_dir == Path("/abs/wal")
    assert cfg.influx.meta_dir == conf / "influx" / "meta"
    assert cfg.influx.inspect_socket == conf / "run" / "inspect.sock"
    assert cfg.influx.output_dir == base / "data" / "influx"
    assert check(relative, capsys) == (
        0,
        f"{relative}: ok (0 sources, influx export; state in {conf / 'state'})\n",
        "",
    )


def test_relative_paths_in_a_fragment_are_relative_to_the_fragment(tmp_path: Path) -> None:
    main = write(tmp_path / "h.yaml", "state_dir: state\n")
    write(
        tmp_path / "h.yaml.d" / "10-influx.yaml",
        "influx:\n  inspect: influx_inspect\n  output_dir: exported\n",
    )
    cfg = config.load(main, {}).config
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.influx is not None
    assert cfg.influx.output_dir == tmp_path / "h.yaml.d" / "exported"
    assert cfg.influx.inspect == "influx_inspect"  # a bare name: looked up in $PATH


def test_demo_config_keeps_its_data_in_the_repository_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # scripts/demo runs from the repository; any place will do
    cfg = config.load(REPO / "etc" / "headlined.yaml", {}).config
    assert cfg.state_dir == REPO / "var" / "state"
    assert cfg.parquet_path == REPO / "var" / "parquet"


# The full example


def model_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key of a config model, nested models included: ``("sources", "url")``."""
    for name, info in model.model_fields.items():
        key = (*prefix, name)
        yield key
        for sub in models_in(info.annotation):
            yield from model_keys(sub, key)


def models_in(annotation: object) -> set[type[BaseModel]]:
    """The models an annotation is made of: ``list[SourceConfig] | None`` → SourceConfig."""
    args = typing.get_args(annotation)
    if args:
        return set().union(*(models_in(arg) for arg in args))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return set()


def test_full_example_passes_check_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADLINE_TOKEN", "t0ken")
    monkeypatch.setenv("S3_KEY_ID", "key")
    monkeypatch.setenv("S3_SECRET", "s3cret")
    monkeypatch.delenv("FEED_HOST", raising=False)
    code, out, err = check(EXAMPLE, capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"{EXAMPLE}: ok (2 sources, influx export, lake;")


def test_full_example_shows_and_explains_every_key() -> None:
    """A key added to a config model fails here until the example shows it, commented."""
    doc = yamlsource.load(
        EXAMPLE, {"HEADLINE_TOKEN": "t0ken", "S3_KEY_ID": "key", "S3_SECRET": "s3cret"}
    )
    assert not doc.problems
    lines = EXAMPLE.read_text().splitlines()
    written: set[tuple[str | int, ...]] = set()
    explained: set[tuple[str | int, ...]] = set()
    for loc, line in doc.key_lines.items():
        key = tuple(part for part in loc if isinstance(part, str))  # any item of a list
        written.add(key)
        if "#" in lines[line - 1] or lines[line - 2].lstrip().startswith("#"):
            explained.add(key)
    keys = set(model_keys(config.Config))
    assert keys - written == set(), "keys missing from etc/headlined.example.yaml"
    assert keys - explained == set(), "keys with no comment in etc/headlined.example.yaml"


def test_a_lake_without_pyiceberg_installed_fails_check_config_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "headlined.yaml"
    path.write_text(f"state_dir: {tmp_path}\nlake:\n  interval: 5m\n")
    assert check(path, capsys)[0] == 0
    monkeypatch.setitem(sys.modules, "pyiceberg", None)  # as if not installed
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"{path}: lake: needs pyiceberg, which is not installed: pip install "
        "'headlined[lake]' (the .deb has it), or remove the lake: section\n"
    )
