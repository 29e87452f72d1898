"""Code answers run in a confined interpreter of their own: right code passes, anything else
(wrong values, prose, network, files, processes, endless loops) fails, and nothing reaches
this process or the disk."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid.generation import Message
from hybrid.routing.calibration.grading import grade
from hybrid.routing.calibration.item import CalibrationItem, Code
from hybrid.routing.calibration.sandbox import candidate_source, passes

SQUARE = Code(
    "function", "square", ("x",), (("(3,)", "9"), ("(-2,)", "4")), "def square(x): return x * x"
)
LENGTH = Code("expression", "", ("xs",), (("([1, 2, 3],)", "3"), ("([],)", "0")), "len(xs)")
EVEN = Code(
    "function", "is_even", ("n",), (("(2,)", "True"), ("(3,)", "False")), "def is_even(n): ..."
)
HALF = Code("expression", "", ("a", "b"), (("(1, 2)", "1.5"),), "(a + b) / 2")


def code_item(answer: Code) -> CalibrationItem:
    return CalibrationItem("c-000", "coding", (Message("user", "Write it."),), answer, "code")


@pytest.mark.parametrize(
    "line",
    [
        "def square(x): return x * x",
        "```python def square(x): return x**2 ```",
        "`square = lambda x: x * x`",
        "lambda x: x * x",
        "Here it is: def square(x): return x * x",
        "def square(x): print('squaring'); return x * x",  # printing is no verdict
    ],
)
def test_right_code_in_any_usual_form_passes(line: str) -> None:
    assert passes(SQUARE, line)


@pytest.mark.parametrize(
    "line",
    [
        "len(xs)",
        "`len(xs)`",
        "return len(xs)",
        "n = len(xs)",
        "len(xs);",
    ],
)
def test_a_right_expression_passes(line: str) -> None:
    assert passes(LENGTH, line)


@pytest.mark.parametrize(
    "line",
    [
        "def square(x): return x * 2",  # wrong for -2
        "def square(x): return 9",
        "The square of x is x * x.",  # prose that mentions the right code
        "def square(x):",  # cut at the line break
        "```python",
        "",
        "def square(x): exit(0)",
        "def square(x): raise ValueError",
        "def cube(x): return x * x",  # not the function asked for
    ],
)
def test_wrong_code_fails(line: str) -> None:
    assert not passes(SQUARE, line)


def test_types_must_match_where_they_mean_something() -> None:
    assert passes(EVEN, "def is_even(n): return n % 2 == 0")
    assert not passes(EVEN, "def is_even(n): return 1 - n % 2")  # 1 and 0 are not booleans
    assert passes(HALF, "(a + b) / 2")
    assert not passes(HALF, "(a + b) // 2")


def test_candidate_source_strips_only_the_wrapping() -> None:
    assert candidate_source("```py total = sum(xs) ```", LENGTH) == "sum(xs)"
    assert candidate_source("Sure: def square(x): return x", SQUARE) == "def square(x): return x"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server that records anything sent to it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                received.append(connection.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


def test_code_cannot_reach_the_network(listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    line = (
        "def square(x): import socket; s = socket.create_connection(('127.0.0.1', "
        f"{port})); s.sendall(b'leak'); return x * x"
    )
    assert not passes(SQUARE, line)
    assert received == []


def test_code_cannot_write_files_or_start_processes(tmp_path: Path) -> None:
    target = tmp_path / "written"
    attempts = [
        f"def square(x): open({str(target)!r}, 'w').write('x'); return x * x",
        f"def square(x): import os; os.system('touch {target}'); return x * x",
        f"def square(x): import subprocess; subprocess.run(['touch', '{target}']); return x * x",
        f"def square(x): import pathlib; pathlib.Path({str(target)!r}).touch(); return x * x",
    ]
    for line in attempts:
        assert not passes(SQUARE, line), line
    assert not target.exists()


def test_code_never_runs_in_this_process() -> None:
    import hybrid.routing.calibration.sandbox as sandbox

    line = (
        "def square(x): import hybrid.routing.calibration.sandbox as s; "
        "s.CPU_SECONDS = 999; return x * x"
    )
    passes(SQUARE, line)
    assert sandbox.CPU_SECONDS == 2


def test_an_endless_loop_is_stopped_and_graded_wrong() -> None:
    assert not passes(SQUARE, "def square(x): return [x for _ in iter(int, 1)]", wall_s=5.0)


def test_a_memory_hog_is_stopped_and_graded_wrong() -> None:
    assert not passes(SQUARE, "def square(x): return len(bytearray(2**34)) and x * x")


def test_a_code_item_grades_the_first_line_only() -> None:
    item = code_item(SQUARE)
    assert grade(item, "def square(x): return x * x\nprint(square(3))")
    assert not grade(item, "Here is the function:\ndef square(x): return x * x")
