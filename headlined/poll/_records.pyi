"""Type stubs of the C extension headlined.poll._records (see headlined/poll/_records.c)."""

from collections.abc import Callable, Container
from datetime import datetime
from typing import Any

from typing_extensions import Buffer

def has_digit_run(data: Buffer, run: int, /) -> bool: ...

class Scanner:
    """Reads a response's records for one source's key and time fields."""

    def __init__(
        self,
        fields: tuple[str, ...],
        time_field: str | None,
        record: Callable[[str, datetime | None, dict[str, Any], tuple[str, int] | None], Any],
        key_of: Callable[[Any], tuple[str, list[Any]] | str],
        time_of: Callable[[dict[str, Any]], datetime | None],
        parse_time: Callable[[Any], datetime | None],
        seq_of: Callable[[list[Any]], tuple[str, int] | None],
    ) -> None: ...
    def scan(
        self, items: list[Any], known: Container[str], /
    ) -> tuple[list[Any], int, int, int, int, int, str | None, int, str | None]: ...
