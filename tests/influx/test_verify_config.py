"""The ``influx:`` keys ``headlined verify`` uses: ``url``, ``headers``, ``username`` and
``password``; errors at their line, and credentials treated as secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from headlined import cli, config


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "h.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_url_and_credentials_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "influx:\n  url: https://influx.example:8086/base\n  username: reader\n"
        "  password: ${PW}\n  headers:\n    X-Org: ${ORG}\n",
    )
    loaded = config.load(path, {"PW": "pw-1", "ORG": "org-2"})
    influx = loaded.config.influx
    assert influx is not None
    assert (influx.url, influx.username, influx.password) == (
        "https://influx.example:8086/base",
        "reader",
        "pw-1",
    )
    assert influx.headers == {"X-Org": "org-2"}
    assert {"pw-1", "org-2"} <= loaded.secrets


def test_by_default_there_is_no_url(tmp_path: Path) -> None:
    influx = config.load(write(tmp_path, "influx:\n  chunk: 1d\n"), {}).config.influx
    assert influx is not None
    assert (influx.url, influx.headers, influx.username, influx.password) == (None, {}, None, None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "influx:\n  url: ftp://influx.example\n",
            "2: influx.url: 'ftp://influx.example' must be an http:// or https:// URL with a host",
        ),
        (
            "influx:\n  password: x\n",
            "2: influx.password: needs influx.username too (HTTP basic authentication)",
        ),
        (
            "influx:\n  username: reader\n",
            (
                "1: influx.password: influx.username is set, so set the password too (write "
                "${NAME} to take it from the environment or LoadCredential=)"
            ),
        ),
        (
            "influx:\n  headers:\n    X-Token: 5\n",
            "3: influx.headers.X-Token: Input should be a valid string (got 5)",
        ),
    ],
    ids=["url scheme", "password alone", "username alone", "header not a string"],
)
def test_mistakes_are_reported_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str
) -> None:
    path = write(tmp_path, text)
    assert check(path, capsys) == (2, "", f"{path}:{error}\n")


def test_a_password_written_in_a_readable_file_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "influx:\n  username: reader\n  password: hunter2-pw\n  headers:\n    X-Token: tok-9\n",
    )
    path.chmod(0o644)
    code, _, err = check(path, capsys)
    assert code == 0
    assert err == (
        f"warning: {path} is readable by every user and holds secrets in influx.headers.X-Token, "
        "influx.password: chmod o-r it, or move them to ${NAME} references (environment or "
        "LoadCredential=)\n"
    )
    assert {"hunter2-pw", "tok-9"} <= config.load(path, {}).secrets
