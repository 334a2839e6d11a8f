"""A line's event log and the KPIs computed from it, the same for a physics run and the
discrete-event model, so the two are compared with one function.

Events (``LineEvent``): ``entered`` (a part taken into a cell; into the first cell, into the
line; ``defective`` when it came in with a defect), ``finished`` (the cell is done with it: ``detail`` ``good`` or ``scrap``), ``left`` (out of
the cell, into the next buffer or out of the line), ``exited`` (out of the line, ``good`` or
``scrap``). A cell's state follows from them (``cell_states``): ``busy`` while a part it took is
unfinished, else ``blocked`` while a finished part waits for room in the buffer after it, else
``starved`` (nothing in it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

LineEventKind = Literal["entered", "finished", "left", "exited", "cell_state"]
CellState = Literal["busy", "blocked", "starved"]


@dataclass(frozen=True)
class LineEvent:
    t: float
    """Seconds of line time since the run started."""
    kind: LineEventKind
    part: int
    """The part's number in the line (counted from 0 as parts enter it); -1 on ``cell_state``."""
    cell: str = ""
    detail: str = ""
    """On ``entered``: ``defective`` when the part came in carrying a defect (else empty); on
    ``finished`` and ``exited``: ``good`` or ``scrap``; on ``cell_state``: the new state."""


def to_dicts(events: list[LineEvent]) -> list[dict]:
    return [asdict(e) for e in events]


def cell_states(events: list[LineEvent], cells: list[str], duration: float) -> dict[str, list[tuple[float, str]]]:
    """Each cell's state changes ``(t, state)`` from its start (starved at time 0)."""
    inside = dict.fromkeys(cells, 0)
    unfinished = dict.fromkeys(cells, 0)
    out = {c: [(0.0, "starved")] for c in cells}
    for e in sorted(events, key=lambda e: e.t):
        if e.cell not in inside or e.kind not in ("entered", "finished", "left"):
            continue
        if e.kind == "entered":
            inside[e.cell] += 1
            unfinished[e.cell] += 1
        elif e.kind == "finished":
            unfinished[e.cell] -= 1
        else:
            inside[e.cell] -= 1
        state = "busy" if unfinished[e.cell] > 0 else "blocked" if inside[e.cell] > 0 else "starved"
        changes = out[e.cell]
        if state == changes[-1][1]:
            continue
        if changes[-1][0] == e.t and len(changes) > 1:  # changed twice at one instant: keep the last
            changes.pop()
            if changes[-1][1] != state:
                changes.append((e.t, state))
        elif changes[-1][0] == e.t:
            changes[-1] = (e.t, state)
        else:
            changes.append((e.t, state))
    return out


def with_states(events: list[LineEvent], cells: list[str], duration: float) -> list[LineEvent]:
    """The log with each cell's state changes added as ``cell_state`` events, in time order."""
    extra = [
        LineEvent(t, "cell_state", -1, c, s)
        for c, changes in cell_states(events, cells, duration).items()
        for t, s in changes
    ]
    return sorted([*events, *extra], key=lambda e: e.t)


def _share(changes: list[tuple[float, str]], duration: float) -> dict[str, float]:
    spent = {"busy": 0.0, "blocked": 0.0, "starved": 0.0}
    for (t0, s), (t1, _) in zip(changes, [*changes[1:], (duration, "")], strict=True):
        spent[s] += max(0.0, min(t1, duration) - min(t0, duration))
    return spent


def line_kpis(
    events: list[LineEvent],
    cells: list[str],
    duration: float,
    ideal_cycle: dict[str, float] | None = None,
    energy: dict[str, float] | None = None,
) -> dict[str, float]:
    """The line's KPIs and each cell's, flat: ``throughput`` (good parts out of the line per hour),
    ``output_rate`` (parts out of the line per hour, scrap included),
    ``wip`` (parts in the line, time-averaged), ``lead_time_mean``/``_p50``/``_p95`` (seconds from
    entering the line to leaving it, good parts), ``good``, ``scrap``, ``energy`` (J) and
    ``energy_per_part`` (J per good part); per cell, ``<cell>_`` then ``produced`` and ``good``
    (parts finished), ``throughput`` (good parts finished per hour), ``utilisation`` (busy share),
    ``busy_s``, ``blocked_s``, ``starved_s``, ``lead_time_mean`` (seconds in the cell), ``oee``
    (ISO 22400 with the whole run as planned busy time: ideal cycle time x good parts / run time)
    and ``energy``; ``bottleneck`` is the index of the busiest cell."""
    hours = duration / 3600.0
    ideal_cycle = ideal_cycle or {}
    energy = energy or {}
    out: dict[str, float] = {"duration_s": duration}
    entered_line: dict[int, float] = {}
    exits = []
    level, last_t, area = 0, 0.0, 0.0
    first = cells[0]
    for e in sorted(events, key=lambda e: e.t):
        if e.t > duration:
            break
        if e.kind == "entered" and e.cell == first:
            area += level * (e.t - last_t)
            level, last_t = level + 1, e.t
            entered_line[e.part] = e.t
        elif e.kind == "exited":
            area += level * (e.t - last_t)
            level, last_t = level - 1, e.t
            exits.append(e)
    area += level * (duration - last_t)
    good = [e for e in exits if e.detail == "good"]
    lead = np.array([e.t - entered_line[e.part] for e in good if e.part in entered_line], dtype=float)
    out["throughput"] = len(good) / hours if hours > 0 else math.nan
    out["output_rate"] = len(exits) / hours if hours > 0 else math.nan
    out["wip"] = area / duration if duration > 0 else math.nan
    out["lead_time_mean"] = float(lead.mean()) if lead.size else math.nan
    out["lead_time_p50"] = float(np.percentile(lead, 50)) if lead.size else math.nan
    out["lead_time_p95"] = float(np.percentile(lead, 95)) if lead.size else math.nan
    out["good"] = float(len(good))
    out["scrap"] = float(len(exits) - len(good))
    out["energy"] = float(sum(energy.values()))
    out["energy_per_part"] = out["energy"] / len(good) if good else math.nan
    states = cell_states(events, cells, duration)
    busiest, best = 0, -1.0
    for k, c in enumerate(cells):
        spent = _share(states[c], duration)
        fin = [e for e in events if e.kind == "finished" and e.cell == c and e.t <= duration]
        n_good = sum(e.detail == "good" for e in fin)
        into = {e.part: e.t for e in events if e.kind == "entered" and e.cell == c}
        stay = [
            e.t - into[e.part]
            for e in events
            if e.kind == "left" and e.cell == c and e.part in into and e.t <= duration
        ]
        out[f"{c}_produced"] = float(len(fin))
        out[f"{c}_good"] = float(n_good)
        out[f"{c}_throughput"] = n_good / hours if hours > 0 else math.nan
        out[f"{c}_utilisation"] = spent["busy"] / duration if duration > 0 else math.nan
        out[f"{c}_busy_s"] = spent["busy"]
        out[f"{c}_blocked_s"] = spent["blocked"]
        out[f"{c}_starved_s"] = spent["starved"]
        out[f"{c}_lead_time_mean"] = float(np.mean(stay)) if stay else math.nan
        out[f"{c}_oee"] = ideal_cycle[c] * n_good / duration if c in ideal_cycle and duration > 0 else math.nan
        out[f"{c}_energy"] = float(energy.get(c, math.nan))
        if out[f"{c}_utilisation"] > best:
            busiest, best = k, out[f"{c}_utilisation"]
    out["bottleneck"] = float(busiest)
    return out


UNITS = {
    "duration_s": "s",
    "throughput": "parts/h",
    "output_rate": "parts/h",
    "wip": "parts",
    "lead_time_mean": "s",
    "lead_time_p50": "s",
    "lead_time_p95": "s",
    "good": "parts",
    "scrap": "parts",
    "energy": "J",
    "energy_per_part": "J/part",
    "bottleneck": "cell index",
    "produced": "parts",
    "utilisation": "share",
    "busy_s": "s",
    "blocked_s": "s",
    "starved_s": "s",
    "oee": "share",
}
"""The unit of each KPI (a cell's ``<cell>_<kpi>`` has its ``<kpi>``'s)."""


def unit_of(key: str, cells: list[str]) -> str:
    if key in UNITS:
        return UNITS[key]
    for c in cells:
        if key.startswith(c + "_"):
            return UNITS.get(key[len(c) + 1 :], "")
    return ""
