"""Type stubs of the C extension headlined.coverage._runs (see _runs.c beside it)."""

from collections.abc import Sequence

class Tracker:
    """Points, typical cadence and gaps of many series, fed their times in runs."""

    def __init__(self, k: float, lo: int = ..., hi: int = ...) -> None: ...
    def feed(self, stream: object, runs: Sequence[tuple[int, int]], /) -> None: ...
    def results(
        self,
    ) -> list[tuple[int, int, int, int, int, int, float, list[tuple[int, int, int]]]]: ...
