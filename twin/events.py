"""The event log of a cell and the production KPIs computed from it.

Events carry simulated time in seconds. KPIs are pure functions of the log, so a log saved from
an episode (or from plant telemetry) gives the same numbers anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

EventKind = Literal[
    "arrived",
    "grasp",
    "picked",
    "placed",
    "dropped",
    "missed",
    "collision",
    "machine_state",
    "produced",
    "inspected",
    "jammed",
    "inserted",
    "docked",
    "loaded",
    "unloaded",
    "delivered",
    "misdelivered",
    "wafer_contact",
    "slipped",
    "chamber_cycle",
    "wafer_moved",
    "wafer_done",
    "early_pick",
    "fault_start",
    "fault_end",
]
MachineState = Literal["idle", "loaded", "processing", "done", "blocked", "down"]
"""A machine's states: ``processing`` is production time, ``down`` is down time (ISO 22400)."""


@dataclass(frozen=True)
class Event:
    t: float
    """Simulated time, seconds since reset."""
    kind: EventKind
    part: str | None = None
    """Name of the part concerned (None for robot-only events)."""
    robot: str | None = None
    detail: str = ""
    """For ``machine_state``: the new state; for ``produced``: ``good`` or ``defective``."""
    station: str | None = None
    """The machine (or other station) the event belongs to."""
    defect: str | None = None
    """On ``arrived``: the defect type the part carries (the ground truth), None for a good part."""
    value: float | None = None
    """A measurement that belongs to the event: on ``docked``, the docking error in millimetres; on
    ``fault_end``, the fault's length in seconds; on an out-of-spec ``fault_start``, the part's size
    factor."""


@dataclass
class EventLog:
    events: list[Event] = field(default_factory=list)

    def add(
        self,
        t: float,
        kind: EventKind,
        part: str | None = None,
        robot: str | None = None,
        detail: str = "",
        station: str | None = None,
        defect: str | None = None,
        value: float | None = None,
    ) -> Event:
        ev = Event(t, kind, part, robot, detail, station, defect, value)
        self.events.append(ev)
        return ev

    def clear(self) -> None:
        self.events.clear()

    def count(self, kind: EventKind) -> int:
        return sum(e.kind == kind for e in self.events)

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def to_dicts(self) -> list[dict]:
        return [asdict(e) for e in self.events]

    def __len__(self) -> int:
        return len(self.events)


def compute_kpis(log: EventLog, sim_time: float, energy: float = 0.0) -> dict[str, float]:
    """Production KPIs of one episode (or any stretch of operation).

    Args:
        log: The event log.
        sim_time: Simulated seconds covered by the log.
        energy: Joules the robots spent (sum of |torque x joint velocity| dt).

    Returns:
        ``parts_arrived``, ``parts_placed``, ``place_rate`` (placed / arrived), ``throughput``
        (placed parts per simulated hour), ``cycle_time_mean``/``_p50``/``_p95`` (seconds from a
        part's arrival to its placement; NaN when nothing was placed), ``pick_attempts``,
        ``picks``, ``pick_success`` (picks / attempts), ``attempts_per_pick``, ``drops``,
        ``missed``, ``collisions``, ``energy`` (J) and ``energy_per_part`` (J per placed part).
    """
    arrived = {e.part: e.t for e in log.events if e.kind == "arrived"}
    placed = [e for e in log.events if e.kind == "placed"]
    cycle = np.array([e.t - arrived[e.part] for e in placed if e.part in arrived], dtype=float)
    attempts = log.count("grasp")
    picks = log.count("picked")
    n_arrived, n_placed = len(arrived), len(placed)
    nan = float("nan")
    return {
        "parts_arrived": float(n_arrived),
        "parts_placed": float(n_placed),
        "place_rate": n_placed / n_arrived if n_arrived else nan,
        "throughput": n_placed * 3600.0 / sim_time if sim_time > 0 else nan,
        "cycle_time_mean": float(cycle.mean()) if cycle.size else nan,
        "cycle_time_p50": float(np.percentile(cycle, 50)) if cycle.size else nan,
        "cycle_time_p95": float(np.percentile(cycle, 95)) if cycle.size else nan,
        "pick_attempts": float(attempts),
        "picks": float(picks),
        "pick_success": picks / attempts if attempts else nan,
        "attempts_per_pick": attempts / picks if picks else nan,
        "drops": float(log.count("dropped")),
        "missed": float(log.count("missed")),
        "collisions": float(log.count("collision")),
        "energy": float(energy),
        "energy_per_part": float(energy) / n_placed if n_placed else nan,
    }


def compute_quality(log: EventLog, bins: dict[str, str]) -> dict[str, float]:
    """Quality KPIs of sorting, from the log: the ground truth on ``arrived`` events and the bin
    on ``placed`` events.

    Args:
        log: The event log.
        bins: Each bin's name and what belongs in it (``good`` or ``defective``; others ignored).

    Returns:
        ``good_shipped`` (good parts in a good bin), ``defects_escaped`` (defective parts in a
        good bin), ``false_rejects`` (good parts in a reject bin), ``defects_caught`` (defective
        parts in a reject bin), ``defects_arrived`` and ``first_pass_yield`` (good parts shipped /
        parts arrived; NaN before any arrival).
    """
    defect = {e.part: e.defect for e in log.events if e.kind == "arrived"}
    out = dict.fromkeys(("good_shipped", "defects_escaped", "false_rejects", "defects_caught"), 0.0)
    for e in log.events:
        if e.kind != "placed" or e.part not in defect or bins.get(e.detail) not in ("good", "defective"):
            continue
        flawed, to_good = defect[e.part] is not None, bins[e.detail] == "good"
        key = {(False, True): "good_shipped", (True, True): "defects_escaped", (False, False): "false_rejects"}
        out[key.get((flawed, to_good), "defects_caught")] += 1.0
    out["defects_arrived"] = float(sum(d is not None for d in defect.values()))
    out["first_pass_yield"] = out["good_shipped"] / len(defect) if defect else float("nan")
    return out


def state_times(log: EventLog, station: str, sim_time: float) -> dict[str, float]:
    """Seconds ``station`` spent in each state over ``[0, sim_time]``; idle until its first
    ``machine_state`` event."""
    times = dict.fromkeys(("idle", "loaded", "processing", "done", "blocked", "down"), 0.0)
    state, since = "idle", 0.0
    for e in sorted((e for e in log.events if e.kind == "machine_state" and e.station == station), key=lambda e: e.t):
        t = min(max(e.t, since), sim_time)
        times[state] += t - since
        state, since = e.detail, t
    times[state] += max(sim_time - since, 0.0)
    return times


LOST_AFTER = frozenset({"dropped", "missed"})
"""Events that make a part produced before them scrap (an inspection's ``reject`` does too)."""


def compute_oee(log: EventLog, sim_time: float, ideal_cycle_time: dict[str, float]) -> dict[str, dict[str, float]]:
    """ISO 22400-2 time model and OEE per machine, from the event log alone.

    With no planned downtime in an episode, the planned busy time (PBT) is the whole span
    ``sim_time``; the actual production time (APT) is the time spent ``processing``; the actual
    unit down time (ADOT) the time spent ``down``. ``produced`` events count the produced
    quantity (PQ). The good quantity (GQ) counts the produced parts that turned out good: made
    from a sound blank (detail ``good``, not ``defective``), and not, after they were produced,
    dropped outside a receptacle, missed at a belt's end or rejected by an inspection (``scrap``
    counts those). ``ideal_cycle_time`` is the planned run time per item (PRI) of each machine,
    in seconds.

    Returns per machine: ``planned_busy_time``, ``actual_production_time``, ``down_time``,
    ``idle_time`` (idle, loaded, done and blocked), ``produced``, ``good``, ``scrap``,
    ``ideal_cycle_time``, ``availability`` = APT / PBT, ``performance`` = PRI x PQ / APT,
    ``quality`` = GQ / PQ and ``oee`` = availability x performance x quality (NaN where a
    denominator is 0).
    """
    nan = float("nan")
    out = {}
    lost_at: dict[str, list[tuple[float, int]]] = {}  # when each part met what makes a produced part bad
    for i, e in enumerate(log.events):
        if e.part is not None and (e.kind in LOST_AFTER or (e.kind == "inspected" and e.detail == "reject")):
            lost_at.setdefault(e.part, []).append((e.t, i))
    for station, pri in ideal_cycle_time.items():
        times = state_times(log, station, sim_time)
        produced = [(i, e) for i, e in enumerate(log.events) if e.kind == "produced" and e.station == station]
        pq = len(produced)
        gq = sum(e.detail == "good" and not any(at > (e.t, i) for at in lost_at.get(e.part, ())) for i, e in produced)
        scrap = sum(e.detail == "good" for _, e in produced) - gq
        pbt, apt = float(sim_time), times["processing"]
        availability = apt / pbt if pbt > 0 else nan
        performance = pri * pq / apt if apt > 0 else nan
        quality = gq / pq if pq else nan
        out[station] = {
            "planned_busy_time": pbt,
            "actual_production_time": apt,
            "down_time": times["down"],
            "idle_time": times["idle"] + times["loaded"] + times["done"] + times["blocked"],
            "produced": float(pq),
            "good": float(gq),
            "scrap": float(scrap),
            "ideal_cycle_time": float(pri),
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "oee": availability * performance * quality,
        }
    return out
