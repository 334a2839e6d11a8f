"""Calibration from a plant's own log: the layout parameters that a log shows directly, fitted from
it (scipy's statistics and a bootstrap for each value's uncertainty), and the calibrated layout.

Parameters, named by their place in the layout (``machines.0.process_time``):

- ``machines.<i>.process_time``: the uniform range of machine ``i``'s cycle, from each cycle's
  seconds processing (``machine_state`` events: processing until done, down time left out).
- ``feeders.<i>.interval``: the uniform range of the gaps between arrivals on feeder ``i``'s
  conveyor (``arrived`` events), within each episode.
- ``feeders.<i>.first_arrival``: the uniform range of each episode's first arrival on it.
- ``conveyors.<i>.speed``: the belt's speed (m/s), the median of its ``speed`` signal while it runs.

- ``faults.machine_breakdown.mtbf`` and ``.mttr``: the machines' mean time between failures and
  to repair (s), from the ``fault_start`` / ``fault_end`` events of the family: the time up
  between faults (and from the last repair to the episode's end, censored) over the faults seen,
  and the repairs' mean (the ones still open at the end counted as censored).
- ``faults.conveyor_jam.rate`` (jams per minute of a belt's time up) and ``.duration`` (a jam's
  uniform range of seconds), the same way.

A fault family the layout lacks is added with the fitted values (the plant breaks down, the
layout did not say so). A uniform range is estimated from the 5th and 95th percentiles of what
the log shows (so a few rows lost or mangled do not stretch it), each value with the standard
deviation of its bootstrap estimates (over the episodes, for the fault figures). Processing ends
(and a fault starts and ends) on the first control step after it is due, so the times are read
half a control step shorter than the log shows.

Parameters no log shows directly are fitted by search over twin runs
(``agents.tools.search``): ``robots.<i>.speed_override``, ``agvs.<i>.max_speed`` and
``conveyors.<i>.friction``; ``parse_params`` tells the two kinds apart and checks each search
range against the layout's bounds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from twin.telemetry.files import read_recording

BOOTSTRAP = 1000
MIN_SAMPLES = 5
"""Observations a parameter read from the log needs at least."""
_KINDS = {"machines": ("process_time",), "feeders": ("interval", "first_arrival"), "conveyors": ("speed",)}
SEARCHED = {"robots": ("speed_override",), "agvs": ("max_speed",), "conveyors": ("friction",)}
"""Parameters no log shows directly: fitted by search over twin runs, within a range."""
FAULTS = {"machine_breakdown": ("mtbf", "mttr"), "conveyor_jam": ("rate", "duration")}
_FAULT_TARGETS = {"machine_breakdown": "machines", "conveyor_jam": "conveyors"}
_SINGULAR = {"machines": "machine", "conveyors": "conveyor"}
_PARAM = re.compile(r"^(\w+)\.(\w+)\.(\w+)$")


class CalibrationError(ValueError):
    """A parameter that cannot be fitted (unknown, absent from the layout, or not in the log)."""


@dataclass
class Fit:
    name: str
    value: float | list[float]
    uncertainty: float | list[float]
    """One standard deviation of the bootstrap estimates, per value."""
    samples: int
    """Observations in the log it was fitted from."""
    before: float | list[float] | None
    method: str = "log"
    """``log`` (read from the plant's log) or ``search`` (twin runs; ``samples`` counts them)."""


@dataclass(frozen=True)
class Param:
    name: str
    section: str
    """``machines``, ``feeders``, ``conveyors``, ``robots``, ``agvs`` or ``faults``."""
    index: int | str
    """The item's index in its section, or the fault family."""
    field: str
    searched: bool = False
    """Fitted by search over twin runs (not read from the log)."""

    def get(self, data: dict):
        if self.section == "faults":
            return (data.get("faults") or {}).get(self.index, {}).get(self.field)
        return data[self.section][self.index].get(self.field)

    def set(self, data: dict, value) -> None:
        if self.section == "faults":
            data.setdefault("faults", {}).setdefault(self.index, {})[self.field] = value
        else:
            data[self.section][self.index][self.field] = value


def _fittable() -> str:
    names = [f"{s}.<i>.{f}" for s, fs in _KINDS.items() for f in fs]
    names += [f"faults.{fam}.{f}" for fam, fs in FAULTS.items() for f in fs]
    return ", ".join(names) + "; by search: " + ", ".join(f"{s}.<i>.{f}" for s, fs in SEARCHED.items() for f in fs)


def parse_params(names: list[str], data: dict) -> list[Param]:
    """Each parameter named, checked against the layout ``data`` (its TOML as a dict);
    CalibrationError names an unknown one and what can be fitted."""
    out = []
    for raw in names:
        name = raw.strip()
        m = _PARAM.match(name)
        if m is None or m.group(1) not in {*_KINDS, *SEARCHED, "faults"}:
            raise CalibrationError(f"--fit {name!r}: not a parameter calibration can fit (it fits {_fittable()})")
        section, index, field = m.groups()
        if section == "faults":
            if index not in FAULTS:
                raise CalibrationError(
                    f"--fit {name!r}: calibration fits the fault families {sorted(FAULTS)}, not {index!r}"
                )
            if field not in FAULTS[index]:
                raise CalibrationError(f"--fit {name!r}: {index} has no {field!r} to fit (it has {FAULTS[index]})")
            out.append(Param(name, section, index, field))
            continue
        if not index.isdigit():
            raise CalibrationError(f"--fit {name!r}: {index!r} is not an index into the layout's {section}")
        searched = field in SEARCHED.get(section, ())
        if not searched and field not in _KINDS.get(section, ()):
            have = [*_KINDS.get(section, ()), *SEARCHED.get(section, ())]
            raise CalibrationError(f"--fit {name!r}: {section} have no {field!r} to fit (they have {have})")
        have = len(data.get(section, []))
        if int(index) >= have:
            raise CalibrationError(f"--fit {name!r}: the layout has {have} {section}; there is no {section}[{index}]")
        out.append(Param(name, section, int(index), field, searched))
    if len({p.name for p in out}) < len(out):
        raise CalibrationError("--fit: a parameter is named twice")
    return out


def _uniform(x: np.ndarray) -> tuple[float, float]:
    """The range (a, b) of a uniform distribution from its 5th and 95th percentiles."""
    q05, q95 = np.quantile(x, [0.05, 0.95])
    width = (q95 - q05) / 0.9
    return float(q05 - 0.05 * width), float(q95 + 0.05 * width)


def _fit_range(x: np.ndarray, rng: np.random.Generator, shift: float = 0.0) -> tuple[list[float], list[float]]:
    a, b = _uniform(x)
    boots = np.array([_uniform(rng.choice(x, len(x))) for _ in range(BOOTSTRAP)])
    return [a - shift, b - shift], [float(boots[:, 0].std()), float(boots[:, 1].std())]


def _episodes(events) -> dict[int, list[dict]]:
    """The event rows (a table, or its rows as dicts) by episode, in time order."""
    rows = events if isinstance(events, list) else events.to_pylist()
    by: dict[int, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["episode"], r["timestamp"])):
        by.setdefault(int(row["episode"]), []).append(row)
    return by


def _process_times(events, machine: str) -> np.ndarray:
    """Seconds processing of each complete cycle of ``machine``: from ``processing`` to ``done``,
    any time ``down`` between left out; a cycle whose events are not all there is skipped."""
    out = []
    for rows in _episodes(events).values():
        start, spent, down_at = None, 0.0, None
        for r in rows:
            if r["kind"] != "machine_state" or r["station"] != machine:
                continue
            t, s = r["timestamp"], r["detail"]
            if s == "processing":
                if down_at is not None:  # back from a repair: the cycle goes on
                    start, down_at = t, None
                else:
                    start, spent = t, 0.0
            elif s == "down" and start is not None:
                spent += (t - start).total_seconds()
                start, down_at = None, t
            elif s == "done" and start is not None:
                out.append(spent + (t - start).total_seconds())
                start, spent, down_at = None, 0.0, None
            else:
                start, spent, down_at = None, 0.0, None
    return np.asarray(out, dtype=float)


def _arrivals(events, conveyor: str, start, offsets: dict[int, float]) -> list[np.ndarray]:
    """Each episode's arrival times on ``conveyor``, in seconds since the episode began (since its
    first event where the log gives no episode starts)."""
    out = []
    for episode, rows in _episodes(events).items():
        times = [r["timestamp"] for r in rows if r["kind"] == "arrived" and r["detail"] == conveyor]
        if not times:
            continue
        zero = (
            start + timedelta(seconds=offsets[episode])
            if start is not None and episode in offsets
            else rows[0]["timestamp"]
        )
        out.append(np.asarray([(t - zero).total_seconds() for t in times]))
    return out


def _fault_episodes(events, family: str, targets: list[str], durations: dict[int, float], dt: float) -> list[dict]:
    """Per episode, what the family's faults show: seconds up (from each repair to the next fault,
    and from the last repair to the episode's end), faults started, the repairs' seconds, and the
    seconds of repairs still open at the end. Each fault starts and ends on a control step, so the
    times are read half a step shorter (starts) and kept (repairs, whose both ends are on steps)."""
    out = []
    for episode, rows in _episodes(events).items():
        if episode not in durations:
            continue
        t0 = rows[0]["timestamp"] if rows else None
        up, faults, repairs, open_s = 0.0, 0, [], 0.0
        for target in targets:
            free, started = 0.0, None
            for r in rows:
                if r["station"] != target or r["kind"] not in ("fault_start", "fault_end"):
                    continue
                if (r["detail"] or "").split(":")[0] != family:
                    continue
                t = (r["timestamp"] - t0).total_seconds() + r["_offset"]
                if r["kind"] == "fault_start" and started is None:
                    up += max(t - free - dt / 2, 0.0)
                    faults, started = faults + 1, t
                elif r["kind"] == "fault_end" and started is not None:
                    repairs.append(t - started)
                    free, started = t, None
            if started is None:
                up += max(durations[episode] - free, 0.0)
            else:
                open_s += max(durations[episode] - started, 0.0)
        out.append({"up": up, "faults": faults, "repairs": repairs, "open": open_s})
    return out


def _fault_figure(field: str, eps: list[dict]):
    up = sum(e["up"] for e in eps)
    faults = sum(e["faults"] for e in eps)
    repairs = [x for e in eps for x in e["repairs"]]
    if field == "mtbf":
        return up / max(faults, 1)
    if field == "rate":
        return 60.0 * faults / max(up, 1e-9)
    if field == "mttr":
        return (sum(repairs) + sum(e["open"] for e in eps)) / max(len(repairs), 1)
    return list(_uniform(np.asarray(repairs))) if len(repairs) >= 2 else [math.nan, math.nan]  # duration


def _fit_fault(param: Param, events, layout_data: dict, info: dict, dt: float, rng: np.random.Generator, where: str):
    durations = {int(e["episode"]): float(e["duration_s"]) for e in info.get("episodes", []) if "duration_s" in e}
    if not durations:
        raise CalibrationError(f"{param.name}: {where} gives no episode lengths to time the faults by")
    kind = _SINGULAR[_FAULT_TARGETS[param.index]]
    targets = [f"{kind}-{i}" for i in range(len(layout_data.get(_FAULT_TARGETS[param.index], [])))]
    logged = {
        r["station"]
        for r in events
        if r["kind"] == "fault_start" and (r["detail"] or "").split(":")[0] == param.index and r["station"]
    }
    targets += sorted(logged - set(targets))
    eps = _fault_episodes(events, param.index, targets, durations, dt)
    faults = sum(e["faults"] for e in eps)
    repairs = sum(len(e["repairs"]) for e in eps)
    seen = repairs if param.field in ("mttr", "duration") else faults
    if seen < MIN_SAMPLES:
        what = "repairs" if param.field in ("mttr", "duration") else "faults"
        raise CalibrationError(
            f"{param.name}: the log shows {seen} {what} of {param.index}; {MIN_SAMPLES} at least are needed"
        )
    value = _fault_figure(param.field, eps)
    boots = [
        _fault_figure(param.field, [eps[i] for i in rng.integers(len(eps), size=len(eps))]) for _ in range(BOOTSTRAP)
    ]
    unc = np.nanstd(np.asarray(boots, dtype=float), axis=0)
    if isinstance(value, list):
        return [float(v) for v in value], [float(u) for u in unc], seen
    return float(value), float(unc), seen


def fit(folder: str | Path, layout_data: dict, names: list[str], seed: int = 0) -> list[Fit]:
    """The fits of ``names`` from the telemetry folder's log, against the layout ``layout_data``
    (the parameters fitted by search are left out: ``agents.tools.search``)."""
    folder = Path(folder)
    params = [p for p in parse_params(names, layout_data) if not p.searched]
    signals, events = read_recording(folder)
    info_path = folder / "telemetry.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    offsets = {int(e["episode"]): float(e["offset_s"]) for e in info.get("episodes", [])}
    start = datetime.fromisoformat(info["start"]) if "start" in info else None
    dt = 1.0 / float(info.get("control_hz", 20.0))
    rng = np.random.default_rng(seed)
    fits = []
    for param in params:
        name, section, index, field = param.name, param.section, param.index, param.field
        before = param.get(layout_data)
        if section == "faults":
            timed = _timed(events, start, offsets)
            value, unc, n = _fit_fault(param, timed, layout_data, info, dt, rng, str(info_path))
            fits.append(Fit(name, value, unc, n, before))
            continue
        if section == "machines":
            x = _process_times(events, f"machine-{index}")
            if len(x) < MIN_SAMPLES:
                raise CalibrationError(
                    f"{name}: the log shows {len(x)} complete cycles of machine-{index}; "
                    f"{MIN_SAMPLES} at least are needed"
                )
            value, unc = _fit_range(x, rng, shift=dt / 2)
        elif section == "feeders":
            conveyor = layout_data[section][index].get("conveyor", "conveyor-0")
            if field == "first_arrival" and not offsets:
                raise CalibrationError(f"{name}: {info_path} gives no episode starts to time first arrivals from")
            episodes = _arrivals(events, conveyor, start, offsets)
            if field == "interval":
                x = np.concatenate([np.diff(ts) for ts in episodes]) if episodes else np.zeros(0)
            else:
                x = np.asarray([ts[0] for ts in episodes])
            if len(x) < MIN_SAMPLES:
                raise CalibrationError(
                    f"{name}: the log shows {len(x)} of them on {conveyor}; {MIN_SAMPLES} at least are needed"
                )
            value, unc = _fit_range(x, rng)
        else:
            x = _signal(signals, f"conveyor-{index}", "speed", running_only=True)
            if len(x) < MIN_SAMPLES:
                raise CalibrationError(f"{name}: the log has {len(x)} readings of conveyor-{index}.speed while it runs")
            value = float(np.median(x))
            unc = float(np.std([np.median(rng.choice(x, len(x))) for _ in range(BOOTSTRAP)]))
        fits.append(Fit(name, value, unc, len(x), before))
    return fits


def _timed(events, start, offsets: dict[int, float]) -> list[dict]:
    """The event rows, each with ``_offset``: seconds from its episode's first event back to the
    episode's start (0 where the log gives no episode starts), so that times count from the start."""
    rows = events.to_pylist()
    first: dict[int, datetime] = {}
    for r in rows:
        e = int(r["episode"])
        if e not in first or r["timestamp"] < first[e]:
            first[e] = r["timestamp"]
    for r in rows:
        e = int(r["episode"])
        known = start is not None and e in offsets
        r["_offset"] = (first[e] - (start + timedelta(seconds=offsets[e]))).total_seconds() if known else 0.0
    return rows


def _signal(signals, asset: str, signal: str, running_only: bool = False) -> np.ndarray:
    import pyarrow.compute as pc

    rows = signals.filter(
        pc.and_(pc.equal(signals["asset"].cast("string"), asset), pc.equal(signals["signal"].cast("string"), signal))
    )
    values = np.asarray(rows["value"].to_numpy(zero_copy_only=False), dtype=float)
    if running_only:
        run = signals.filter(
            pc.and_(
                pc.equal(signals["asset"].cast("string"), asset), pc.equal(signals["signal"].cast("string"), "running")
            )
        )
        on = {t for t, v in zip(run["timestamp"].to_pylist(), run["value"].to_pylist(), strict=True) if v and v > 0.5}
        keep = (
            np.array([t in on for t in rows["timestamp"].to_pylist()], dtype=bool) if on else np.ones(len(values), bool)
        )
        values = values[keep & (values > 0)]
    return values[np.isfinite(values)]


def apply(layout_data: dict, fits: list[Fit]) -> dict:
    """A copy of the layout ``layout_data`` with the fitted values in place (a fault family it
    lacks added)."""
    data = json.loads(json.dumps(layout_data))
    for f in fits:
        param = parse_params([f.name], data)[0]
        param.set(data, f.value)
    return data


def relative_error(value, truth) -> float:
    """The largest |value - truth| / |truth| over a value's parts."""
    vs, ts = (value, truth) if isinstance(value, list) else ([value], [truth])
    return max(abs(v - t) / abs(t) if t else math.inf for v, t in zip(vs, ts, strict=True))
