"""How close a twin run is to a plant log (or to another twin run): the figures engineers ask for
before they trust a twin.

Both sides are telemetry folders (``twin.telemetry.files``). The figures:

- ``throughput_error``: |twin - plant| / plant of the output rate (parts out per hour: ``placed``,
  ``delivered`` and ``wafer_done`` events), in percent.
- Cycle times: each part's seconds from its ``arrived`` to its output event (or, where a log
  has no arrivals, the seconds between outputs); the two-sample Kolmogorov-Smirnov statistic with
  its p-value, and the Wasserstein-1 distance in seconds (scipy).
- ``time_in_state_agreement``: per machine, the fraction of the common time span in which both
  are in the same state (from their ``machine_state`` events, each episode starting ``idle``).
- KPI differences (twin minus plant) of per-episode KPIs with 95% bootstrap intervals over the
  episodes: output rate, mean cycle time, each machine's share of time processing.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from twin.telemetry.files import read_recording

OUTPUT_KINDS = ("placed", "delivered", "wafer_done")
"""Events that mark a part (tote, wafer) leaving the cell done."""
BOOTSTRAP = 2000


class FidelityError(ValueError):
    """A log that cannot be compared (no such folder, no time span)."""


@dataclass
class Episode:
    episode: int
    start_s: float
    duration_s: float
    outputs: int = 0
    cycle_s: list[float] = field(default_factory=list)
    states: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    """Per machine, (seconds since the episode's start, new state) at each change."""

    def processing_share(self, machine: str) -> float:
        return _share(self.states.get(machine, []), self.duration_s, "processing")


@dataclass
class Log:
    """One side of a comparison, read from a telemetry folder."""

    folder: Path
    episodes: list[Episode]

    @property
    def duration_s(self) -> float:
        return sum(e.duration_s for e in self.episodes)

    @property
    def outputs(self) -> int:
        return sum(e.outputs for e in self.episodes)

    @property
    def throughput_per_h(self) -> float:
        return 3600.0 * self.outputs / self.duration_s

    @property
    def cycle_s(self) -> np.ndarray:
        return np.asarray([c for e in self.episodes for c in e.cycle_s], dtype=float)

    @property
    def machines(self) -> list[str]:
        return sorted({m for e in self.episodes for m in e.states})


def _share(changes: list[tuple[float, str]], duration: float, state: str) -> float:
    if duration <= 0:
        return 0.0
    total, cur, t0 = 0.0, "idle", 0.0
    for t, s in changes:
        if cur == state:
            total += t - t0
        cur, t0 = s, t
    if cur == state:
        total += duration - t0
    return total / duration


def read_log(folder: str | Path) -> Log:
    """A telemetry folder as a :class:`Log`: its episodes (from ``telemetry.json``, else the whole
    time span as one), their outputs, cycle times and machine state changes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FidelityError(f"{folder}: no such telemetry folder")
    signals, events = read_recording(folder)
    info_path = folder / "telemetry.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    ev = events.to_pylist()
    stamps = [r["timestamp"] for r in ev] + [
        signals.column("timestamp")[i].as_py() for i in (0, signals.num_rows - 1) if signals.num_rows
    ]
    start = datetime.fromisoformat(info["start"]) if "start" in info else (min(stamps) if stamps else None)
    if start is None:
        raise FidelityError(f"{folder}: no signals and no events: nothing to compare")
    secs = lambda ts: (ts - start).total_seconds()  # noqa: E731
    spans = info.get("episodes") or [
        {"episode": 0, "offset_s": 0.0, "duration_s": max(secs(t) for t in stamps) if stamps else 0.0}
    ]
    episodes = {
        int(s["episode"]): Episode(int(s["episode"]), float(s["offset_s"]), float(s["duration_s"])) for s in spans
    }
    if not info.get("episodes"):
        for r in ev:
            r["episode"] = 0
    arrived: dict[tuple[int, str], float] = {}
    last_out: dict[int, float] = {}
    has_arrivals = any(r["kind"] == "arrived" for r in ev)
    for r in ev:
        ep = episodes.get(int(r["episode"]))
        if ep is None:
            raise FidelityError(f"{folder}: an event of episode {r['episode']}, which telemetry.json does not list")
        t = secs(r["timestamp"]) - ep.start_s
        if r["kind"] == "arrived" and r["part"]:
            arrived.setdefault((ep.episode, r["part"]), t)
        elif r["kind"] in OUTPUT_KINDS:
            ep.outputs += 1
            if has_arrivals:
                t0 = arrived.pop((ep.episode, r["part"]), None)
                if t0 is not None:
                    ep.cycle_s.append(t - t0)
            else:
                if ep.episode in last_out:
                    ep.cycle_s.append(t - last_out[ep.episode])
                last_out[ep.episode] = t
        elif r["kind"] == "machine_state" and r["station"]:
            ep.states.setdefault(r["station"], []).append((t, r["detail"]))
    log = Log(folder, sorted(episodes.values(), key=lambda e: e.start_s))
    if log.duration_s <= 0:
        raise FidelityError(f"{folder}: its episodes last no time")
    return log


def _agreement(a: Log, b: Log, machine: str) -> float | None:
    """The fraction of the common span in which ``machine`` is in the same state in both logs,
    the logs' episodes laid end to end on their own clocks."""

    def timeline(log: Log) -> list[tuple[float, str]]:
        out = []
        for e in log.episodes:
            out.append((e.start_s, "idle"))
            out += [(e.start_s + t, s) for t, s in e.states.get(machine, [])]
        return out

    ta, tb = timeline(a), timeline(b)
    span = min(a.duration_s, b.duration_s)
    if span <= 0 or not (any(machine in e.states for e in a.episodes) or any(machine in e.states for e in b.episodes)):
        return None
    cuts = sorted({0.0, span, *(t for t, _ in ta if t < span), *(t for t, _ in tb if t < span)})

    def state_at(line, times, t):
        k = bisect.bisect_right(times, t) - 1  # the last change at or before t
        return line[k][1] if k >= 0 else "idle"

    times_a, times_b = [t for t, _ in ta], [t for t, _ in tb]
    same = 0.0
    for lo, hi in itertools.pairwise(cuts):
        if state_at(ta, times_a, lo) == state_at(tb, times_b, lo):
            same += hi - lo
    return same / span


def _bootstrap_diff(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean of ``y`` minus mean of ``x`` with a 95% percentile bootstrap interval (each side
    resampled over its own episodes)."""
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) == 0 or len(y) == 0:
        return {"difference": None, "ci95": [None, None]}
    diffs = rng.choice(y, (BOOTSTRAP, len(y))).mean(1) - rng.choice(x, (BOOTSTRAP, len(x))).mean(1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": float(y.mean() - x.mean()), "ci95": [float(lo), float(hi)]}


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def fidelity(plant: Log, twin: Log, seed: int = 0) -> dict:
    """The figures of ``twin`` against ``plant`` (see the module's docstring), as ``fidelity.json``
    holds them."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    pt, tt = plant.throughput_per_h, twin.throughput_per_h
    err = abs(tt - pt) / pt * 100.0 if pt > 0 else (0.0 if tt == 0 else math.inf)
    pc, tc = plant.cycle_s, twin.cycle_s
    if len(pc) and len(tc):
        ks = stats.ks_2samp(pc, tc)
        ks_stat, ks_p, w1 = float(ks.statistic), float(ks.pvalue), float(stats.wasserstein_distance(pc, tc))
    else:
        ks_stat = ks_p = w1 = None
    machines = sorted(set(plant.machines) | set(twin.machines))
    agreement = {m: _clean(_agreement(plant, twin, m)) for m in machines}
    per_ep = lambda log, f: np.asarray([f(e) for e in log.episodes], dtype=float)  # noqa: E731
    kpis = {
        "throughput_per_h": _bootstrap_diff(
            per_ep(plant, lambda e: 3600 * e.outputs / e.duration_s),
            per_ep(twin, lambda e: 3600 * e.outputs / e.duration_s),
            rng,
        ),
        "cycle_time_mean_s": _bootstrap_diff(
            per_ep(plant, lambda e: np.mean(e.cycle_s) if e.cycle_s else np.nan),
            per_ep(twin, lambda e: np.mean(e.cycle_s) if e.cycle_s else np.nan),
            rng,
        ),
    }
    for m in machines:
        kpis[f"{m}.processing_share"] = _bootstrap_diff(
            per_ep(plant, lambda e, m=m: e.processing_share(m)), per_ep(twin, lambda e, m=m: e.processing_share(m)), rng
        )
    return {
        "plant": str(plant.folder),
        "twin": str(twin.folder),
        "throughput_error": _clean(err),
        "throughput_per_h": {"plant": pt, "twin": tt},
        "ks_statistic": ks_stat,
        "ks_pvalue": ks_p,
        "wasserstein_s": w1,
        "cycle_times": {"plant": len(pc), "twin": len(tc)},
        "time_in_state_agreement": agreement,
        "kpi_differences": kpis,
        "units": {
            "throughput_error": "%",
            "throughput_per_h": "parts/h",
            "wasserstein_s": "s",
            "time_in_state_agreement": "fraction of time",
            "cycle_time_mean_s": "s",
            "processing_share": "fraction of time",
        },
        "episodes": {"plant": len(plant.episodes), "twin": len(twin.episodes)},
        "duration_s": {"plant": plant.duration_s, "twin": twin.duration_s},
    }
