"""The baseline experiment: the published table this project started from.

Its numbers live in `baseline_experiment.json` next to this module, with their source; nothing
else in the repo repeats them. The table is ResNet18 + LARS, one row per (data count, batch size),
with the linear classifier's test loss and accuracy. Its "data count" column has two readings
(subset size or epochs; see db/presets.py), so a lab table is comparable when its two row keys
are (subset_size or epochs, batch_size) and its values lie within the published grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "baseline_experiment.json"
DATA_COUNT_FIELDS = ("subset_size", "epochs")  # the two readings of the "data count" column


@dataclass(frozen=True)
class BaselineTable:
    title: str
    source: str
    encoder: str
    optimizer: str
    cells: dict[tuple[int, int], tuple[float, float]]  # (data count, batch) -> (loss, accuracy)

    @property
    def data_counts(self) -> list[int]:
        return sorted({d for d, _ in self.cells})

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({b for _, b in self.cells})


@lru_cache(maxsize=1)
def baseline_table() -> BaselineTable:
    doc = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    cells = {(int(c["data_count"]), int(c["batch_size"])): (float(c["loss"]), float(c["accuracy"]))
             for c in doc["cells"]}
    return BaselineTable(doc["title"], doc["source"], doc["encoder"], doc["optimizer"], cells)
