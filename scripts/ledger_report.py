"""The ledger benchmark's table: each query's seconds and peak memory at every size, the growth
from the smallest size to the largest, the raw-record baseline beside it, and the verdict on the
target (every query under :data:`TARGET_S` seconds and :data:`TARGET_MB` MB at every size).
"""

from __future__ import annotations

from ledger_queries import QUERIES

TARGET_S = 0.3
TARGET_MB = 100.0


def report(
    results: dict[tuple[str, str, bool], tuple[float, float]],
    names: list[str],
    baseline: set[str],
    database: str,
) -> None:
    """Print the table and the verdict on the target.

    Args:
        results: ``(query label, size name, raw-record path?)`` to (median seconds, peak MB);
            the raw-record path only at the sizes in ``baseline``.
        names: The size names measured, in order: growth is the last one's time over the first's.
        baseline: The size names the raw-record path ran at.
        database: What held the ledgers, for the verdict line.
    """
    header = ["query", *(f"{n} s / MB" for n in names), f"{names[-1]}/{names[0]} time"]
    header += [f"raw {n} s / MB" for n in names if n in baseline]
    if baseline:
        header.append("raw/rollup time")
    rows = [header]
    worst_s = worst_mb = 0.0
    for label, _ in QUERIES:
        cells = [label]
        for name in names:
            seconds, mb = results[(label, name, False)]
            worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, mb)
            cells.append(f"{seconds:.3f} / {mb:.0f}")
        first, last = results[(label, names[0], False)][0], results[(label, names[-1], False)][0]
        cells.append(f"{last / first:.2f}x" if first else "-")
        ratio = "-"
        for name in names:
            if name in baseline:
                seconds, mb = results[(label, name, True)]
                cells.append(f"{seconds:.3f} / {mb:.0f}")
                ratio = f"{seconds / results[(label, name, False)][0]:.1f}x at {name}"
        if baseline:
            cells.append(ratio)
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    verdict = "met" if worst_s < TARGET_S and worst_mb < TARGET_MB else "NOT met"
    print(
        f"\n{database}: slowest rollup query {worst_s:.3f} s, most memory {worst_mb:.0f} MB: "
        f"target (< {TARGET_S} s, < {TARGET_MB:.0f} MB at every size) {verdict}"
    )
