"""The router shipped before, read on the same items as the router shipped now.

``router_before.json`` is the difficulty model shipped for the embedded model on 2026-12-04
(``hybrid/routing/data/<sha256>.json`` at commit ``dcc1deb``): the router this report's
generalization work started from. It is the feature stage alone (the same hand-made features and
hashed word n-grams as today, ``FEATURE_VERSION`` 1, the words at weight 1), fitted on 378 of
540 generated items of the first nine families, with no model stage, each prompt read alone.

Two figures stand for it:

- *as shipped*: those weights, unchanged, on the external sets, on the traffic sets (no label)
  and on the generated items of the six families added since, which it never saw (it was fitted
  on draws of the other nine, so it gets no figure there);
- *its recipe*: the same kind of router (feature stage alone, words at weight 1) fitted as this
  report fits every router: leaving each family out, and on every generated item for the
  external and the traffic sets.

Beside them, the router shipped now (``two-stage+recent``), read in the one seeded arrival
order of the report's summary tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from router_folds import Figure, Labelled, bullet, figures

from hybrid.routing.calibration.fitting import feature_matrix
from hybrid.routing.difficulty.model import DifficultyModel

BEFORE_FILE = Path(__file__).with_name("router_before.json")
BEFORE_WORD_WEIGHT = 1.0
"""The weight the router shipped before gave the hashed word n-grams."""

FITTED_ON = (
    "arithmetic",
    "facts",
    "units",
    "counting",
    "reasoning",
    "code",
    "choice",
    "chat",
    "multilingual",
)
"""The families the router shipped before was fitted on (draws of their generators)."""

NOW = "two-stage+recent"
COLUMNS = ("as shipped", "its recipe", "now")

HEAD = (
    "| items | n | AUROC: before, as shipped | before, its recipe | now "
    "| kept local @95%: as shipped | its recipe | now |\n"
    "|---|---:|---|---|---|---|---|---|"
)


@dataclass(frozen=True)
class Row:
    """The router shipped before and the router shipped now on one collection of items.

    Attributes:
        items: What the items are.
        n: How many.
        figures: ``"as shipped"`` (None where it saw draws of the items' generators), ``"its
            recipe"`` and ``"now"`` to :func:`router_folds.figures`.
    """

    items: str
    n: int
    figures: dict[str, dict[str, Figure] | None]


def load_before(sha256: str) -> DifficultyModel | None:
    """The router shipped before, or None when ``sha256`` is not the model it was fitted for."""
    data = json.loads(BEFORE_FILE.read_text(encoding="utf-8"))
    if data["meta"]["model_sha256"] != sha256:
        return None
    return DifficultyModel.from_json(data)


@dataclass(frozen=True)
class Collection:
    """One collection of items and the two fitted routers' scores of them.

    Attributes:
        items: What the items are (the row's first cell).
        data: The items, with their grades.
        recipe: The before router's recipe's scores (fitted without each item's family, or on
            every generated item).
        now: The router shipped now's scores.
        mask: Which of the items the row reads.
        shipped: Whether the weights as shipped are read here (not on families they saw).
    """

    items: str
    data: Labelled
    recipe: np.ndarray
    now: np.ndarray
    mask: np.ndarray
    shipped: bool


def against_before(
    model: DifficultyModel, collections: Sequence[Collection], *, seed: int, resamples: int
) -> list[Row]:
    """Each collection's row: the weights as shipped, their recipe and the router now."""
    rows = []
    for c in collections:
        wrong = c.data.wrong[c.mask]
        shipped = model.scores(feature_matrix([c.data.items[i] for i in np.flatnonzero(c.mask)]))
        read = {
            "as shipped": shipped if c.shipped else None,
            "its recipe": c.recipe[c.mask],
            "now": c.now[c.mask],
        }
        rows.append(
            Row(
                c.items,
                int(c.mask.sum()),
                {
                    name: None
                    if scores is None
                    else figures(scores, wrong, seed=seed, resamples=resamples)
                    for name, scores in read.items()
                },
            )
        )
    return rows


def added_families(families: Sequence[str]) -> np.ndarray:
    """Which items belong to a family the router shipped before never saw."""
    return np.array([family not in FITTED_ON for family in families])


def _cell(row: Row, name: str, statistic: str) -> str:
    figure = row.figures[name]
    if figure is None:
        return "-"
    fmt = "{:.0%}" if statistic.startswith("kept") else "{:.3f}"
    return figure[statistic].text(fmt)


def before_summary(rows: Sequence[Row]) -> str:
    """The report summary's bullet: AUROC before (as shipped) and now, per collection."""
    parts = ", ".join(
        f"{row.items} {_cell(row, 'as shipped', 'AUROC').split(' ')[0]} to "
        f"{_cell(row, 'now', 'AUROC').split(' ')[0]}"
        for row in rows
        if row.figures["as shipped"] is not None
    )
    return bullet(
        "Against the router shipped before (2026-12-04: the feature stage alone, fitted on nine "
        f"families), on the same items, AUROC from: {parts} (see [The router shipped "
        "before](#the-router-shipped-before)).",
    )


def before_section(rows: Sequence[Row]) -> str:
    """The report's section: the router shipped before beside the router shipped now."""
    lines = "\n".join(
        f"| {row.items} | {row.n} | "
        + " | ".join(_cell(row, name, "AUROC") for name in COLUMNS)
        + " | "
        + " | ".join(_cell(row, name, "kept local @95%") for name in COLUMNS)
        + " |"
        for row in rows
    )
    return f"""
## The router shipped before

The difficulty model shipped for the embedded model on 2026-12-04 (commit `dcc1deb`, kept as
`scripts/router_before.json`): the feature stage alone, the hashed words at weight 1, fitted on
378 of 540 generated items of the first nine families, no model stage, each prompt read alone.
*As shipped*: those weights, unchanged, on items it never saw (on the generated items, only the
six families added since; it was fitted on draws of the other nine). *Its recipe*: the same
kind of router fitted as every router of this report is (leaving each family out; on every
generated item for the external and the traffic sets). *Now*: the router `hybrid serve`
runs ({NOW}), in the arrival order of the tables above. 95 % bootstrap intervals.

{HEAD}
{lines}
"""
