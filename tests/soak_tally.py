"""What the soak tests saw, part by part, and the summary table ``scripts/soak`` prints.

Each soak test adds its counts under its part's name; every column but ``requests`` counts
something that should never happen, so a run passes only when they are all zero.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class SoakCounts:
    """One part's counts.

    Attributes:
        requests: Requests sent to hybrid.
        server_errors: Responses with a 5xx status hybrid does not document for what happened.
        tracebacks: Tracebacks in the server's log.
        secrets_leaked: Secrets that reached the cloud, or that the scanner missed.
        records_lost: Responses a client received whose request id is not in the ledger.
    """

    requests: int = 0
    server_errors: int = 0
    tracebacks: int = 0
    secrets_leaked: int = 0
    records_lost: int = 0


_HEADINGS = ("requests", "5xx", "tracebacks", "secrets leaked", "records lost")


class SoakTally:
    """The counts of every soak part run in this session."""

    def __init__(self) -> None:
        self.parts: dict[str, SoakCounts] = {}

    def add(self, part: str, **counts: int) -> None:
        """Add ``counts`` (SoakCounts field names) to ``part``'s row."""
        row = self.parts.setdefault(part, SoakCounts())
        for name, value in counts.items():
            setattr(row, name, getattr(row, name) + value)

    def failures(self) -> list[str]:
        """``part: column = n`` for each count that should be zero and is not."""
        return [
            f"{part}: {heading} = {value}"
            for part, row in self.parts.items()
            for heading, field in zip(_HEADINGS[1:], fields(SoakCounts)[1:], strict=True)
            if (value := getattr(row, field.name))
        ]

    def table(self) -> str:
        """The parts as a fixed-width table, with a total row."""
        total = SoakCounts()
        for row in self.parts.values():
            for field in fields(SoakCounts):
                setattr(total, field.name, getattr(total, field.name) + getattr(row, field.name))
        rows = [(part, row) for part, row in self.parts.items()] + [("total", total)]
        width = max(len(part) for part, _ in rows)
        lines = [f"{'part':<{width}}  " + "  ".join(f"{h:>8}" for h in _HEADINGS)]
        for part, row in rows:
            values = [getattr(row, field.name) for field in fields(SoakCounts)]
            cells = (f"{v:>{max(len(h), 8)}}" for h, v in zip(_HEADINGS, values, strict=True))
            lines.append(f"{part:<{width}}  " + "  ".join(cells))
        return "\n".join(lines)
