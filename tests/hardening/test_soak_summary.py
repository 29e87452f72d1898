"""The summary ``scripts/soak`` ends with: a row per part, a total, and a failure for each
count that should be zero and is not."""

from __future__ import annotations

from soak_tally import SoakTally


def test_a_clean_run_prints_each_part_and_the_total() -> None:
    tally = SoakTally()
    tally.add("schemathesis", requests=300)
    tally.add("kill -9 cycles", requests=120)
    tally.add("kill -9 cycles", requests=80)

    lines = tally.table().splitlines()

    assert lines[0] == lines[0].rstrip()
    assert lines[0].split("  ")[0] == "part"
    headings = [cell.strip() for cell in lines[0].split("  ")[1:] if cell.strip()]
    assert headings == ["requests", "5xx", "tracebacks", "secrets leaked", "records lost"]
    assert lines[1].split() == ["schemathesis", "300", "0", "0", "0", "0"]
    assert lines[2].split() == ["kill", "-9", "cycles", "200", "0", "0", "0", "0"]
    assert lines[3].split() == ["total", "500", "0", "0", "0", "0"]
    assert tally.failures() == []


def test_every_count_but_requests_fails_the_run() -> None:
    tally = SoakTally()
    tally.add("kill -9 cycles", requests=200, records_lost=2)
    tally.add("black hole", requests=50, server_errors=1, tracebacks=3)
    tally.add("secret corpus", secrets_leaked=1)

    assert tally.failures() == [
        "kill -9 cycles: records lost = 2",
        "black hole: 5xx = 1",
        "black hole: tracebacks = 3",
        "secret corpus: secrets leaked = 1",
    ]
    assert tally.table().splitlines()[-1].split() == ["total", "250", "1", "3", "1", "2"]
