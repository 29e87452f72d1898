from __future__ import annotations

from hybrid.local.text import StopText


def stream(pieces: list[str], stop: list[str], *, strip: bool = False) -> str:
    text = StopText(stop, strip=strip)
    out = "".join(text.feed(p) for p in pieces)
    return out + ("" if text.stopped else text.flush())


def test_stop_sequence_split_across_tokens_is_cut_and_not_sent() -> None:
    assert stream(["Paris", ".\n", "Us", "er: hi"], ["\nUser:"]) == "Paris."


def test_text_resembling_a_stop_prefix_is_released_once_it_diverges() -> None:
    text = StopText(["\nUser:"], strip=False)
    assert text.feed("a\nUs") == "a"
    assert text.feed("ually") == "\nUsually"
    assert not text.stopped


def test_earliest_of_several_stops_wins() -> None:
    assert stream(["one END two STOP"], ["STOP", "END"]) == "one "


def test_strip_drops_leading_and_trailing_whitespace_while_streaming() -> None:
    text = StopText([], strip=True)
    assert text.feed(" ") == ""
    assert text.feed(" The") == "The"
    assert text.feed(" capital \n") == " capital"
    assert text.flush() == ""


def test_strip_keeps_inner_whitespace_once_more_text_follows() -> None:
    assert stream([" a", " \n", "b "], [], strip=True) == "a \nb"


def test_nothing_is_released_after_a_stop() -> None:
    text = StopText(["\n\n"], strip=True)
    assert text.feed(" Paris.\n\nUser") == "Paris."
    assert text.stopped
    assert text.feed("more") == ""


def test_without_stops_everything_streams_through() -> None:
    text = StopText([], strip=False)
    assert text.feed(" x ") == " x "


def test_a_cut_answer_drops_the_start_of_the_format_s_turn_marker() -> None:
    stops = ["\nUser:", "\nAssistant:", "\n\n"]
    text = StopText(stops, strip=True)
    streamed = [text.feed(p) for p in [" Paris", " is", " the", " capital", ".", "\n", "User"]]
    assert "".join(streamed) + text.flush() == "Paris is the capital."


def test_a_cut_answer_keeps_the_start_of_the_request_s_own_stop() -> None:
    # The request's own stop may be the answer's own text: its start is sent (llama.cpp).
    text = StopText(["\nUser:", "THE END"], strip=False, own=["THE END"])
    assert text.feed("It was THE EN") == "It was "
    assert text.flush() == "THE EN"
