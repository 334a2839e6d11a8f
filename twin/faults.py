"""The fault timeline of an episode: seeded faults that start and end as simulated time goes on.

Each (family, piece of equipment) pair has its own seeded stream, drawn as time goes on, so a
fault's timing does not depend on how long the episode runs or on what else fails. A fault that
starts is applied to its equipment (a belt stops, a machine goes down, a camera freezes, a tool
loses grip...) and logged as a ``fault_start`` event; its end is undone and logged as
``fault_end``. Availability, MTBF/MTTR as observed and time to recover come from the log alone
(``compute_fault_kpis``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.events import EventLog
from twin.layout import FAULT_FAMILIES, Faults

GOOD_PART = frozenset({"placed", "produced", "delivered", "wafer_done", "inserted"})
"""Events that count as the next good part after a fault (time to recover)."""


def side_rng(rng: np.random.Generator, salt: str) -> np.random.Generator:
    """A generator seeded from ``rng``'s state and ``salt``, without drawing from ``rng``: what a
    cell draws for its faults and variation leaves its nominal draws as they were."""
    digest = hashlib.sha256(repr(rng.bit_generator.state).encode() + salt.encode()).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


@dataclass
class Fault:
    family: str
    target: str
    start: float
    end: float
    mode: str = ""


class _Stream:
    """One (family, target) pair's faults, drawn one after the other."""

    def __init__(self, family: str, target: str, config: Any, rng: np.random.Generator) -> None:
        self.family, self.target, self.config, self.rng = family, target, config, rng
        self.active: Fault | None = None
        self.next = self._draw_start(0.0)

    def _draw_start(self, after: float) -> Fault | None:
        c, rng = self.config, self.rng
        if self.family == "machine_breakdown":
            up = c.mtbf if c.distribution == "fixed" else float(rng.exponential(c.mtbf))
            down = c.mttr if c.distribution == "fixed" else float(rng.exponential(c.mttr))
            down = max(down, 0.05)
        else:
            if c.rate <= 0:
                return None
            up = float(rng.exponential(60.0 / c.rate))
            down = float(rng.uniform(*c.duration))
        modes = getattr(c, "modes", None)
        mode = str(modes[int(rng.integers(len(modes)))]) if modes else ""
        return Fault(self.family, self.target, after + up, after + up + down, mode)


class FaultTimeline:
    """The faults of one cell, applied to its equipment through ``apply(fault, on)``.

    Args:
        config: The layout's ``[faults]``.
        targets: Per family, the names of the equipment it acts on.
        apply: Called with a fault and True when it starts, False when it ends.
    """

    def __init__(self, config: Faults, targets: dict[str, list[str]], apply) -> None:
        self.config = config
        self.targets = {f: targets.get(f, []) for f in config.families() if f != "out_of_spec"}
        self._apply = apply
        self.streams: list[_Stream] = []
        self.active: list[Fault] = []

    def reset(self, rng: np.random.Generator) -> None:
        """End every fault without logging it and draw fresh streams from ``rng``."""
        for fault in self.active:
            self._apply(fault, False)
        self.active = []
        self.streams = []
        for family, names in self.targets.items():
            for name in names:
                seed = rng.integers(2**63)
                self.streams.append(_Stream(family, name, getattr(self.config, family), np.random.default_rng(seed)))

    def update(self, t: float, log: EventLog) -> None:
        """Start and end the faults due by simulated time ``t``."""
        for s in self.streams:
            if s.active is not None and t + 1e-9 >= s.active.end:
                self._apply(s.active, False)
                self.active.remove(s.active)
                log.add(t, "fault_end", detail=s.family, station=s.target, value=t - s.active.start)
                s.next, s.active = s._draw_start(t), None
            if s.active is None and s.next is not None and t + 1e-9 >= s.next.start:
                s.active = s.next
                s.active.start = t  # on a control step
                s.active.end = max(s.active.end, t)
                self.active.append(s.active)
                self._apply(s.active, True)
                log.add(
                    t, "fault_start", detail=s.family + (f":{s.active.mode}" if s.active.mode else ""), station=s.target
                )

    def flags(self) -> np.ndarray:
        """One 0/1 per family in ``FAULT_FAMILIES``: whether a fault of it is on now."""
        on = {f.family for f in self.active}
        return np.array([f in on for f in FAULT_FAMILIES], dtype=np.float32)

    @property
    def equipment(self) -> int:
        """How many (family, equipment) pairs can fail."""
        return sum(len(v) for v in self.targets.values())


def compute_fault_kpis(log: EventLog, sim_time: float, equipment: int) -> dict[str, float]:
    """Fault KPIs of one episode, from the log alone.

    Args:
        log: The event log.
        sim_time: Simulated seconds covered.
        equipment: How many (family, piece of equipment) pairs could fail.

    Returns:
        ``faults`` (started), ``fault_time`` (seconds of faults, summed over equipment, the open
        ones up to ``sim_time``), ``availability`` (share of equipment time without a fault),
        ``mtbf_observed`` (equipment time without a fault per fault, s), ``mttr_observed`` (mean
        length of the faults that ended, s), ``time_to_recover`` (mean seconds from a fault's end
        to the next good part: placed, produced, delivered, inserted or a wafer done; NaN when
        none followed) and ``parts_out_of_spec``.
    """
    nan = float("nan")
    starts = [e for e in log.events if e.kind == "fault_start" and not e.detail.startswith("out_of_spec")]
    ends = [e for e in log.events if e.kind == "fault_end" and not e.detail.startswith("out_of_spec")]
    open_since = {(e.station, e.detail.split(":")[0]): e.t for e in starts}
    for e in ends:
        open_since.pop((e.station, e.detail), None)
    lengths = [e.value for e in ends if e.value is not None]
    fault_time = sum(lengths) + sum(sim_time - t for t in open_since.values())
    total = sim_time * equipment
    goods = sorted(e.t for e in log.events if e.kind in GOOD_PART)
    recover = []
    for e in ends:
        after = next((g for g in goods if g >= e.t), None)
        if after is not None:
            recover.append(after - e.t)
    return {
        "faults": float(len(starts)),
        "fault_time": float(fault_time),
        "availability": 1.0 - fault_time / total if total > 0 else nan,
        "mtbf_observed": (total - fault_time) / len(starts) if starts else nan,
        "mttr_observed": float(np.mean(lengths)) if lengths else nan,
        "time_to_recover": float(np.mean(recover)) if recover else nan,
        "parts_out_of_spec": float(sum(e.kind == "fault_start" and e.detail == "out_of_spec" for e in log.events)),
    }


def draws_out_of_spec(rng: np.random.Generator, share: float, mass_scale: tuple[float, float]) -> tuple[bool, float]:
    """Whether one arriving part is out of spec, and its mass factor."""
    out = bool(rng.uniform() < share)
    return out, float(rng.uniform(*mass_scale)) if out else 1.0
