"""A ``window`` that the API's responses contradict is noticed, and said once."""

from __future__ import annotations

from headlined.poll.windowcheck import Advice, WindowCheck


def observe_all(check: WindowCheck, polls: list[tuple[int, int]]) -> list[Advice]:
    return [a for p in polls if (a := check.observe(*p)) is not None]


def test_steady_responses_larger_than_window_say_too_small_once() -> None:
    check = WindowCheck(200, steady_polls=3)
    growing = [(150, 150), (262, 112), (350, 88)]  # the feed fills the API's window
    assert observe_all(check, growing) == []
    advice = observe_all(check, [(350, 40)] * 6)
    assert advice == [Advice("too_small", 200, 350)]
    assert advice[0].action == "set window: 350 for this source"


def test_steady_smaller_responses_with_new_records_say_too_large() -> None:
    check = WindowCheck(200, steady_polls=10)
    assert observe_all(check, [(100, 40)] * 9) == []
    advice = observe_all(check, [(100, 100)] * 5)  # even with no overlap at all
    assert advice == [Advice("too_large", 200, 100)]
    assert "no gap could be detected: using window 100" in advice[0].effect


def test_quiet_polls_neither_prove_nor_break_a_run() -> None:
    check = WindowCheck(200, steady_polls=4)
    polls = [(100, 5), (100, 0), (100, 5), (37, 0), (100, 5)]
    assert observe_all(check, polls) == []
    assert observe_all(check, [(100, 5)]) == [Advice("too_large", 200, 100)]


def test_no_advice_for_a_right_window() -> None:
    check = WindowCheck(200, steady_polls=3)
    growing = [(n, 10) for n in range(20, 200, 10)]  # a young feed filling up
    full = [(200, 100)] * 20  # then every response a full window
    quiet = [(37, 0)] * 20  # or a feed with 37 records and nothing new
    assert observe_all(check, growing + full + quiet) == []


def test_a_changing_size_restarts_the_run() -> None:
    check = WindowCheck(200, steady_polls=3)
    assert observe_all(check, [(100, 5), (100, 5), (120, 5), (120, 5), (119, 5)]) == []
