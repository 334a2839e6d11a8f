"""The event log of a cell and the production KPIs computed from it.

Events carry simulated time in seconds. KPIs are pure functions of the log, so a log saved from
an episode (or from plant telemetry) gives the same numbers anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

EventKind = Literal["arrived", "grasp", "picked", "placed", "dropped", "missed", "collision"]


@dataclass(frozen=True)
class Event:
    t: float
    """Simulated time, seconds since reset."""
    kind: EventKind
    part: str | None = None
    """Name of the part concerned (None for robot-only events)."""
    robot: str | None = None
    detail: str = ""


@dataclass
class EventLog:
    events: list[Event] = field(default_factory=list)

    def add(
        self, t: float, kind: EventKind, part: str | None = None, robot: str | None = None, detail: str = ""
    ) -> Event:
        ev = Event(t, kind, part, robot, detail)
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
