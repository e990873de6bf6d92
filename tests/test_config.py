"""Config validation: the example is accepted, every mistake is reported at its line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from headlined import cli, config

REPO = Path(__file__).resolve().parents[1]
# The contract's example config, copied verbatim: the repository stands alone.
SPEC = REPO / "tests" / "data" / "headlined.example.yaml"

GOOD_SOURCE = """\
sources:
  - name: a
    url: http://127.0.0.1:1/feed
    key: [id]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "headlined.yaml"
    path.write_text(dedent(text))
    return path


def test_shared_example_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADLINE_TOKEN", "s3cret-token")
    loaded = config.load(SPEC)
    cfg = loaded.config
    assert [s.name for s in cfg.sources] == ["headline-a", "headline-b"]
    assert cfg.sources[1].headers == {"Authorization": "Bearer s3cret-token"}
    assert cfg.sources[1].key == ["station", "seq"]
    assert cfg.sources[0].min_interval == 2.0
    assert cfg.sources[0].max_interval == 300.0
    assert cfg.influx is not None
    assert cfg.influx.chunk == 7 * 86400
    assert "s3cret-token" in loaded.secrets


def test_repo_default_config_is_valid() -> None:
    loaded = config.load(REPO / "etc" / "headlined.yaml")
    assert loaded.config.sources, "the offline default must poll the demo feed"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5),
        ("2m", 120),
        ("1h", 3600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("1w", 604800),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 s", "s", "5x", "-5s", "1h-30m", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        config.parse_duration(text)


# Each case: a broken file, the line the error must name, and the key it must name. (YAML
# syntax errors, which name no key, are in test_config_files.py.)
MALFORMED = [
    ("top level is a list", "- a\n- b\n", 1, "(top level)"),
    ("unknown top key", "state_dir: /tmp/x\nlog_levle: info\n", 2, "log_levle"),
    ("unknown source key", GOOD_SOURCE + "    windw: 200\n", 5, "sources[0].windw"),
    ("bad log level", "log_level: loud\n", 1, "log_level"),
    ("bad duration", GOOD_SOURCE + "    min_interval: 2x\n", 5, "sources[0].min_interval"),
    (
        "duration without unit",
        GOOD_SOURCE + "    max_interval: 300\n",
        5,
        "sources[0].max_interval",
    ),
    (
        "min above max",
        GOOD_SOURCE + "    min_interval: 5m\n    max_interval: 1m\n",
        6,
        "sources[0].max_interval",
    ),
    ("window zero", GOOD_SOURCE + "    window: 0\n", 5, "sources[0].window"),
    ("window not a number", GOOD_SOURCE + "    window: lots\n", 5, "sources[0].window"),
    (
        "empty key list",
        "sources:\n  - name: a\n    url: http://x/\n    key: []\n",
        4,
        "sources[0].key",
    ),
    ("missing url", "sources:\n  - name: a\n    key: [id]\n", 2, "sources[0].url"),
    ("not a URL", "sources:\n  - name: a\n    url: ftp://x/\n    key: [id]\n", 3, "sources[0].url"),
    (
        "duplicate names",
        GOOD_SOURCE + "  - name: a\n    url: http://x/\n    key: [id]\n",
        5,
        "sources[1].name",
    ),
    (
        "missing variable",
        GOOD_SOURCE + "    headers:\n      X-Token: ${HEADLINED_NOPE}\n",
        6,
        "sources[0].headers.X-Token",
    ),
    ("duplicate yaml key", "log_level: info\nlog_level: debug\n", 2, "log_level"),
    (
        "name unsafe in a path",
        "sources:\n  - name: ../up\n    url: http://x/\n    key: [id]\n",
        2,
        "sources[0].name",
    ),
    ("watchdog not a bool", "watchdog: maybe\n", 1, "watchdog"),
    ("influx unknown key", "influx:\n  data_dri: /x\n", 2, "influx.data_dri"),
    (
        "influx end before start",
        "influx:\n  start: 2025-01-01T00:00:00Z\n  end: 2024-01-01T00:00:00Z\n",
        3,
        "influx.end",
    ),
    ("headers not a mapping", GOOD_SOURCE + "    headers: [a, b]\n", 5, "sources[0].headers"),
]


@pytest.mark.parametrize(
    ("text", "line", "key"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_config_exit_2_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, key: str
) -> None:
    path = write(tmp_path, text)
    assert cli.main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: {key}: " in err, err


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        log_level: loud
        sources:
          - name: a
            url: nope
            key: [id]
            window: -1
        """,
    )
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert [(p.line, p.key) for p in err.value.problems] == [
        (1, "log_level"),
        (4, "sources[0].url"),
        (6, "sources[0].window"),
    ]


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_SOURCE + "    min_intervl: 2s\n")
    with pytest.raises(config.ConfigError, match="did you mean 'min_interval'"):
        config.load(path)


def test_variables_from_environment_and_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "FEED_TOKEN").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("FEED_USER", "from-env")
    path = write(tmp_path, GOOD_SOURCE + "    headers:\n      A: ${FEED_USER}:${FEED_TOKEN}\n")
    loaded = config.load(path)
    assert loaded.config.sources[0].headers["A"] == "from-env:from-credential"
    assert {"from-env", "from-credential"} <= loaded.secrets


def test_secret_not_echoed_in_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_URL_TOKEN", "tok-123456")
    path = write(
        tmp_path, "sources:\n  - name: a\n    url: ftp://${FEED_URL_TOKEN}/\n    key: [id]\n"
    )
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert "tok-123456" not in str(err.value)
    assert "sources[0].url" in str(err.value)


def test_default_path_from_environment() -> None:
    assert config.default_path({"HEADLINED_CONFIG": "/x.yaml"}) == Path("/x.yaml")
    assert config.default_path({}) == Path("/etc/headlined/headlined.yaml")


def test_console_script_exit_codes(tmp_path: Path) -> None:
    exe = shutil.which("headlined", path=str(Path(sys.executable).parent))
    assert exe is not None
    good = write(tmp_path, GOOD_SOURCE)
    ok = subprocess.run(
        [exe, "check-config", "-c", str(good)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [exe, "check-config", "-c", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "none.yaml:1: (file): cannot read" in missing.stderr
    usage = subprocess.run([exe, "frobnicate"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2


def test_literal_secret_in_a_world_readable_file_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_TOKEN", "t0k")
    path = write(
        tmp_path,
        GOOD_SOURCE + "    headers:\n      Authorization: Bearer zq9-in-file\n"
        "      X-Token: ${FEED_TOKEN}\n",
    )
    path.chmod(0o644)
    assert cli.main(["check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "readable by every user" in err
    assert "sources[0].headers.Authorization" in err
    assert "X-Token" not in err  # from the environment: nothing in the file to protect
    assert "zq9-in-file" not in err  # the warning never shows the secret itself
    path.chmod(0o640)
    assert cli.main(["check-config", "-c", str(path)]) == 0
    assert "readable by every user" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("listen", "warned"),
    [
        ("127.0.0.1:9464", False),
        ("[::1]:9464", False),
        ("localhost:9464", False),
        ("0.0.0.0:9464", True),
        ("192.0.2.7:9464", True),
        ("metrics.example:9464", True),
    ],
)
def test_metrics_beyond_loopback_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, warned: bool
) -> None:
    path = write(tmp_path, f"metrics:\n  listen: '{listen}'\n")
    assert cli.main(["check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert ("has no authentication" in err) == warned
