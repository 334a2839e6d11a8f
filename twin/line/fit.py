"""Fitting the fast line model to physics runs of the line, and the fitted model's file.

Each cell's effective process times (EPT: the time a cell takes per part as the line sees it,
robot moves, belts, machine cycles and hold-ups all in) come from the physics runs' events as
``finished[k] - max(entered[k], finished[k - 1])`` over the cell's parts in order (Hopp and
Spearman's effective process time, measured from event data as Jacobs et al. do), less the
time the cell stood stopped; its stoppages (a jammed belt, a broken-down machine) are fitted as
a failure process of their own: the mean time it ran between them and how long each lasted. A
cell's scrap is fitted apart for the parts that came in defective and those that came in sound
(an inspection cell rejects nearly all of the first and few of the second), with the share of
defective parts its input brings in taken from its layout, not from the few hundred parts the
fit happened to draw. The fit also keeps each cell's energy per part. The file records where it came from: the
line file's hash, the seeds and line time it was fitted on, and the code version.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.line.kpis import LineEvent
from twin.line.schema import Line

FIT_VERSION = 2
"""2: scrap split by the part's defect on entry (``defect_rate``, ``scrap_if_defective``,
``scrap_if_sound``); version-1 files (one ``scrap_rate``) still load and run."""


class FittedCell(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ept: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=1)]
    """Effective process times seen in the physics, seconds (the model draws from them)."""
    scrap_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of the parts the cell finished that it scrapped (rejected or lost)."""
    defect_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share of the parts coming into the cell that carry a defect (its feeder's ``defect_rate``
    in the layout; 0 for a tray). None: the model scraps at ``scrap_rate`` regardless."""
    scrap_if_defective: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share of the defective parts the cell finished that it scrapped (None: it saw none)."""
    scrap_if_sound: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share of the sound parts the cell finished that it scrapped (None: it saw none)."""
    energy_per_part: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    """Joules the cell's robots spent per part finished."""
    ept_mean: float = 0.0
    ept_cv: float = 0.0
    """Coefficient of variation of the EPT (standard deviation / mean)."""
    parts: int = 0
    """Parts the fit saw finished in this cell."""
    stoppages: int = 0
    """Stoppages (a jammed belt, a broken-down machine) the fit saw in this cell."""
    uptime_between_s: float | None = None
    """Mean seconds the cell ran between stoppages (the model draws exponential times with this
    mean); None when the fit saw none."""
    repair_s: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=list)
    """How long each stoppage lasted, seconds (the model draws from them)."""


class FittedLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = FIT_VERSION
    line: str
    """The line's name."""
    line_sha256: str
    seeds: list[int]
    duration_s: float
    """Line time of each physics run the fit used, seconds."""
    code: str = ""
    """The code's version (git commit) that ran the physics."""
    created: str = ""
    cells: dict[str, FittedCell]


def effective_process_times(events: list[LineEvent], cell: str, stopped: list[tuple[float, float]] = ()) -> list[float]:
    """The cell's EPT realisations in one run (FIFO order of its entries and finishes), each
    less the time the cell was stopped within it (the model stops the cell on its own)."""
    into = sorted(e.t for e in events if e.kind == "entered" and e.cell == cell)
    done = sorted(e.t for e in events if e.kind == "finished" and e.cell == cell)
    out, prev = [], -math.inf
    for a, d in zip(into, done, strict=False):
        start = max(a, prev)
        down = sum(max(0.0, min(d, t1) - max(start, t0)) for t0, t1 in stopped)
        out.append(max(0.0, d - start - down))
        prev = d
    return out


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for t0, t1 in sorted(intervals):
        if out and t0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t1))
        else:
            out.append((t0, t1))
    return out


def fit_line(
    line: Line,
    runs: list[tuple],
    *,
    defect_rates: dict[str, float] | None = None,
    line_sha256: str,
    seeds: list[int],
    duration: float,
    code: str = "",
    created: str = "",
) -> FittedLine:
    """The fitted model from physics ``runs`` of ``line``: each run's events, its cells' energy (J)
    and, optionally, its cells' stoppages (``envs.line.LineRun.stoppages``). ``defect_rates``:
    each cell's input defect rate (``envs.line.LineRun.defect_rates``); without it, scrap is
    fitted as one rate per cell."""
    cells, _ = line.ordered()
    fitted = {}
    for c in cells:
        ept: list[float] = []
        finished = scrap = 0
        split = {True: [0, 0], False: [0, 0]}  # came in defective -> [finished, scrapped]
        energy = 0.0
        repairs: list[float] = []
        uptime = 0.0
        for run in runs:
            events, spent = run[0], run[1]
            stopped = _union((run[2] if len(run) > 2 else {}).get(c.name, []))
            ept += effective_process_times(events, c.name, stopped)
            repairs += [t1 - t0 for t0, t1 in stopped]
            uptime += duration - sum(t1 - t0 for t0, t1 in stopped)
            fin = [e for e in events if e.kind == "finished" and e.cell == c.name]
            finished += len(fin)
            scrap += sum(e.detail == "scrap" for e in fin)
            defective = {e.part for e in events if e.kind == "entered" and e.cell == c.name and e.detail == "defective"}
            for e in fin:
                tally = split[e.part in defective]
                tally[0] += 1
                tally[1] += e.detail == "scrap"
            energy += float(spent.get(c.name, 0.0))
        if not ept:
            raise ValueError(f"cell {c.name!r} finished no part in the physics runs: nothing to fit its times to")
        a = np.asarray(ept)
        fitted[c.name] = FittedCell(
            ept=[round(float(v), 4) for v in a],
            scrap_rate=scrap / finished if finished else 0.0,
            defect_rate=None if defect_rates is None else float(defect_rates.get(c.name, 0.0)),
            scrap_if_defective=split[True][1] / split[True][0] if split[True][0] else None,
            scrap_if_sound=split[False][1] / split[False][0] if split[False][0] else None,
            energy_per_part=energy / finished if finished else 0.0,
            ept_mean=float(a.mean()),
            ept_cv=float(a.std() / a.mean()) if a.mean() > 0 else 0.0,
            parts=finished,
            stoppages=len(repairs),
            uptime_between_s=uptime / len(repairs) if repairs else None,
            repair_s=[round(v, 4) for v in repairs],
        )
    return FittedLine(
        line=line.name,
        line_sha256=line_sha256,
        seeds=list(seeds),
        duration_s=duration,
        code=code,
        created=created,
        cells=fitted,
    )


def save_model(model: FittedLine, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(model.model_dump_json(indent=1), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a file
    return path


def load_model(path: str | Path) -> FittedLine:
    """A fitted line model from its JSON file; a bad file is refused naming the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a fitted line model (JSON): {exc}") from None
    try:
        return FittedLine.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ValueError(f"{path}: {where}: {first['msg']}") from None


def model_table(model: FittedLine) -> dict[str, Any]:
    """The model as ``run_des`` takes it."""
    return {"cells": {n: c.model_dump() for n, c in model.cells.items()}}
