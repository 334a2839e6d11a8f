"""A plant log driving the twin: what the plant did (parts arriving, machines' cycles, breakdowns
and repairs, belts stopping and changing speed) comes from the log instead of the seeded
generators, while the robots act (an expert or a policy).

The log is a telemetry folder. The minimum it needs, per episode:

- ``events.parquet`` with ``timestamp``, ``episode``, ``kind`` and, by kind: ``arrived`` (``part``
  named ``part-<type>-<k>``, ``detail`` the conveyor, ``defect``) for parts arriving on a
  conveyor; ``machine_state`` (``station``, ``detail`` the new state) for the machines' cycles;
  ``fault_start`` / ``fault_end`` with ``detail`` ``machine_breakdown`` (``station``) for
  breakdowns and repairs.
- ``telemetry.json`` with ``start`` and each episode's ``offset_s`` (without them, each episode's
  first event is its time zero).
- Optionally ``signals.parquet`` rows ``conveyor-<i>`` ``running`` (bool) and ``speed`` (m/s, or
  mm/s, converted) for the belts.

The same events may come as an OCEL 2.0 JSON or an XES file instead of the folder
(``twin.telemetry.interchange``: no belt signals then); a refused event is named as the file
names it (an OCEL event's id, an XES trace and event).

:func:`plan` reads it against the layout: a row naming an asset or part type the layout does not
have is refused naming the row; what can be repaired (rows out of time order, a unit in mm/s, a
speed beyond the layout's bounds, a cycle with no end) is, and said in the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from twin.parts import Arrival
from twin.telemetry.files import read_recording

MAX_BELT_SPEED = 2.0
"""m/s: the layout schema's bound on a conveyor's speed."""


class ReplayError(ValueError):
    """A log the twin cannot be driven by (names the file and row)."""


@dataclass
class EpisodePlan:
    """What the log says happened in one episode, on its own clock (seconds from its start)."""

    episode: int
    duration_s: float
    arrivals: dict[str, list[Arrival]] = field(default_factory=dict)
    """Per conveyor, the parts arriving on it."""
    process_times: dict[str, list[float]] = field(default_factory=dict)
    """Per machine, its cycles' seconds processing, in order."""
    changes: list[tuple[float, str, str, float]] = field(default_factory=list)
    """(t, asset, what, value): ``down`` (1 broken down, 0 repaired), ``running`` and ``speed``."""
    dropped: list[str] = field(default_factory=list)
    """Arrivals the twin could not take (its part pool holds no more of that type)."""
    _next: int = 0

    def begin(self) -> None:
        """Ready to drive an episode from its start."""
        self.changes.sort(key=lambda c: c[0])
        self._next = 0
        self.dropped.clear()

    def due(self, t: float) -> list[tuple[float, str, str, float]]:
        """The changes at or before ``t`` not applied yet."""
        out = []
        while self._next < len(self.changes) and self.changes[self._next][0] <= t + 1e-9:
            out.append(self.changes[self._next])
            self._next += 1
        return out


def _part_type(name: str, types: list[str]) -> str | None:
    """The layout part type a pool name ``part-<type>[-<defect>][-x<scale>]-<k>`` is of."""
    if not name or not name.startswith("part-"):
        return None
    rest = name[len("part-") :]
    for t in sorted(types, key=len, reverse=True):
        if rest == t or rest.startswith(t + "-"):
            return t
    return None


def plan(folder: str | Path, layout) -> tuple[list[EpisodePlan], list[str]]:
    """The episodes of the log in ``folder`` as plans for a twin of ``layout`` (a CellLayout), and
    the report of what was repaired."""
    folder = Path(folder)
    labels: list[str] | None = None
    if folder.is_file():  # an OCEL 2.0 or XES log
        from twin.telemetry.interchange import read_interchange

        signals, events, info, labels = read_interchange(folder)
        where = folder
    else:
        signals, events = read_recording(folder)
        info_path = folder / "telemetry.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        where = folder / "events.parquet"
    row = (lambda k: labels[k]) if labels is not None else (lambda k: f"row {k}")
    start = datetime.fromisoformat(info["start"]) if "start" in info else None
    offsets = {int(e["episode"]): float(e["offset_s"]) for e in info.get("episodes", [])}
    durations = {int(e["episode"]): float(e["duration_s"]) for e in info.get("episodes", [])}
    conveyors = {f"conveyor-{i}" for i in range(len(layout.conveyors))}
    machines = {f"machine-{i}" for i in range(len(layout.machines))}
    types = [p.name for p in layout.parts]
    report: list[str] = []
    rows = events.to_pylist()
    for i in range(1, len(rows)):
        if (rows[i]["episode"], rows[i]["timestamp"]) < (rows[i - 1]["episode"], rows[i - 1]["timestamp"]):
            report.append(f"{where}: {row(i)}: timestamp before {row(i - 1)}'s; the rows were put in time order")
            break
    order = sorted(range(len(rows)), key=lambda k: (rows[k]["episode"], rows[k]["timestamp"]))
    plans: dict[int, EpisodePlan] = {}
    zero: dict[int, datetime] = {}
    open_cycle: dict[tuple[int, str], tuple[float, float, float | None]] = {}  # start, spent, down at
    for k in order:
        r = rows[k]
        ep = int(r["episode"])
        if ep not in zero:
            zero[ep] = start + timedelta(seconds=offsets[ep]) if start is not None and ep in offsets else r["timestamp"]
        t = (r["timestamp"] - zero[ep]).total_seconds()
        p = plans.setdefault(ep, EpisodePlan(ep, durations.get(ep, 0.0)))
        kind = r["kind"]
        if kind == "arrived" and r["detail"] and r["detail"].startswith("conveyor-"):
            if r["detail"] not in conveyors:
                raise ReplayError(
                    f"{where}: {row(k)}: conveyor {r['detail']!r} is not in the layout (it has {sorted(conveyors)})"
                )
            ptype = _part_type(r["part"], types)
            if ptype is None:
                raise ReplayError(f"{where}: {row(k)}: part {r['part']!r} is of no part type the layout has ({types})")
            p.arrivals.setdefault(r["detail"], []).append(Arrival(t, ptype, 0.0, 0.0, r["defect"]))
        elif kind == "machine_state" and r["station"]:
            m = r["station"]
            if m not in machines:
                raise ReplayError(f"{where}: {row(k)}: machine {m!r} is not in the layout (it has {sorted(machines)})")
            state, key = r["detail"], (ep, m)
            cur = open_cycle.get(key)
            if state == "processing":
                open_cycle[key] = (t, cur[1], None) if cur is not None and cur[2] is not None else (t, 0.0, None)
            elif state == "down" and cur is not None and cur[2] is None:
                open_cycle[key] = (t, cur[1] + t - cur[0], t)
            elif state == "done" and cur is not None and cur[2] is None:
                p.process_times.setdefault(m, []).append(cur[1] + t - cur[0])
                open_cycle.pop(key)
            elif state != "down":
                if cur is not None:
                    report.append(
                        f"{where}: {row(k)}: {m} went {state} with a cycle unfinished; that cycle was left out"
                    )
                open_cycle.pop(key, None)
        elif kind in ("fault_start", "fault_end") and (r["detail"] or "").split(":")[0] == "machine_breakdown":
            m = r["station"]
            if m not in machines:
                raise ReplayError(f"{where}: {row(k)}: machine {m!r} is not in the layout (it has {sorted(machines)})")
            p.changes.append((t, m, "down", 1.0 if kind == "fault_start" else 0.0))
        p.duration_s = max(p.duration_s, t)
    _belts(signals, folder, conveyors, layout, start, offsets, plans, zero, report)
    for p in plans.values():
        p.begin()
    if not plans:
        raise ReplayError(f"{where}: no events: nothing to replay")
    return [plans[e] for e in sorted(plans)], report


def _belts(signals, folder, conveyors, layout, start, offsets, plans, zero, report) -> None:
    """The belts' ``running`` and ``speed`` changes from the signals, as plan changes."""
    where = folder / "signals.parquet"
    last: dict[tuple[int, str, str], float] = {}
    rows = signals.to_pylist()
    for k, r in enumerate(rows):
        asset, sig = r["asset"], r["signal"]
        if sig not in ("running", "speed") or not str(asset).startswith("conveyor-"):
            continue
        if asset not in conveyors:
            raise ReplayError(f"{where}: row {k}: conveyor {asset!r} is not in the layout (it has {sorted(conveyors)})")
        value, unit = r["value"], r["unit"]
        if value is None or not math.isfinite(value):
            continue
        if sig == "speed":
            if unit == "mm/s":
                value /= 1000.0
                if not any("mm/s" in line for line in report):
                    report.append(f"{where}: row {k}: speed in mm/s; converted to m/s (and every such row)")
            elif unit != "m/s":
                raise ReplayError(f"{where}: row {k}: {asset} speed in {unit!r}; m/s or mm/s was expected")
            if not 0.0 <= value <= MAX_BELT_SPEED:
                report.append(f"{where}: row {k}: {asset} speed {value:g} m/s outside [0, {MAX_BELT_SPEED:g}]; clipped")
                value = min(max(value, 0.0), MAX_BELT_SPEED)
        else:
            value = 1.0 if value > 0.5 else 0.0
        ep = int(r["episode"])
        if ep not in plans:
            continue
        base = zero[ep] if ep in zero else r["timestamp"]
        if start is not None and ep in offsets:
            base = start + timedelta(seconds=offsets[ep])
        t = (r["timestamp"] - base).total_seconds()
        key = (ep, asset, sig)
        if key not in last or abs(last[key] - value) > (0.005 if sig == "speed" else 0.5):
            last[key] = value
            plans[ep].changes.append((t, asset, sig, value))


def drive(twin, p: EpisodePlan) -> None:
    """Apply the plan's changes due now to ``twin`` (called before each control step)."""
    for _, asset, what, value in p.due(twin.sim_time):
        if what == "down":
            machine = next(m for m in twin.machines if m.name == asset)
            machine.set_down(twin.sim_time, value > 0.5, twin.log)
        elif what == "running":
            twin.conveyors[asset].set_running(value > 0.5)
        elif what == "speed" and value > 0:
            conv = twin.conveyors[asset]
            conv.set_speed_scale(value / conv.config.speed)
