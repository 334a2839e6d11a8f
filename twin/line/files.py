"""A line run's files: its event log (``events.csv``, the cells' states included) and its KPIs
(``kpis.json``, with units and where the numbers came from)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from twin.line.kpis import LineEvent, unit_of, with_states


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_run(
    folder: str | Path, events: list[LineEvent], cells: list[str], duration: float, kpis: dict, meta: dict
) -> Path:
    """Write one run into ``folder`` (made if needed): ``events.csv`` and ``kpis.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "events.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "kind", "part", "cell", "detail"])
        for e in with_states(events, cells, duration):
            w.writerow([f"{e.t:.3f}", e.kind, e.part, e.cell, e.detail])
    doc = {
        **meta,
        "duration_s": duration,
        "cells": cells,
        "kpis": {k: _clean(v) for k, v in kpis.items()},
        "units": {k: unit_of(k, cells) for k in kpis},
    }
    (folder / "kpis.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return folder
