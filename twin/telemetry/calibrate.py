"""Calibration from a plant's own log: the layout parameters that a log shows directly, fitted from
it (scipy's statistics and a bootstrap for each value's uncertainty), and the calibrated layout.

Parameters, named by their place in the layout (``machines.0.process_time``):

- ``machines.<i>.process_time``: the uniform range of machine ``i``'s cycle, from each cycle's
  seconds processing (``machine_state`` events: processing until done, down time left out).
- ``feeders.<i>.interval``: the uniform range of the gaps between arrivals on feeder ``i``'s
  conveyor (``arrived`` events), within each episode.
- ``feeders.<i>.first_arrival``: the uniform range of each episode's first arrival on it.
- ``conveyors.<i>.speed``: the belt's speed (m/s), the median of its ``speed`` signal while it runs.

A uniform range is estimated from the 5th and 95th percentiles of what the log shows (so a few
rows lost or mangled do not stretch it), each value with the standard deviation of its bootstrap
estimates. Processing ends on the first control step after the cycle's end, so the cycle times
are read half a control step shorter than the log shows.
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
_PARAM = re.compile(r"^(machines|feeders|conveyors)\.(\d+)\.(process_time|interval|first_arrival|speed)$")
_KINDS = {"machines": ("process_time",), "feeders": ("interval", "first_arrival"), "conveyors": ("speed",)}


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
    before: float | list[float]


def parse_params(names: list[str], data: dict) -> list[tuple[str, str, int, str]]:
    """``(name, section, index, field)`` of each parameter, checked against the layout ``data`` (its
    TOML as a dict); CalibrationError names an unknown one and what can be fitted."""
    out = []
    for name in names:
        m = _PARAM.match(name.strip())
        if m is None:
            fits = ", ".join(f"{s}.<i>.{f}" for s, fs in _KINDS.items() for f in fs)
            raise CalibrationError(f"--fit {name!r}: not a parameter calibration can fit (it fits {fits})")
        section, index, field = m.group(1), int(m.group(2)), m.group(3)
        if field not in _KINDS[section]:
            raise CalibrationError(f"--fit {name!r}: {section} have no {field!r} to fit (they have {_KINDS[section]})")
        have = len(data.get(section, []))
        if index >= have:
            raise CalibrationError(f"--fit {name!r}: the layout has {have} {section}; there is no {section}[{index}]")
        out.append((name.strip(), section, index, field))
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
    by: dict[int, list[dict]] = {}
    for row in sorted(events.to_pylist(), key=lambda r: (r["episode"], r["timestamp"])):
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


def fit(folder: str | Path, layout_data: dict, names: list[str], seed: int = 0) -> list[Fit]:
    """The fits of ``names`` from the telemetry folder's log, against the layout ``layout_data``."""
    folder = Path(folder)
    params = parse_params(names, layout_data)
    signals, events = read_recording(folder)
    info_path = folder / "telemetry.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    offsets = {int(e["episode"]): float(e["offset_s"]) for e in info.get("episodes", [])}
    start = datetime.fromisoformat(info["start"]) if "start" in info else None
    dt = 1.0 / float(info.get("control_hz", 20.0))
    rng = np.random.default_rng(seed)
    fits = []
    for name, section, index, field in params:
        before = layout_data[section][index].get(field)
        if section == "machines":
            x = _process_times(events, f"machine-{index}")
            if len(x) < 5:
                raise CalibrationError(
                    f"{name}: the log shows {len(x)} complete cycles of machine-{index}; 5 at least are needed"
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
            if len(x) < 5:
                raise CalibrationError(f"{name}: the log shows {len(x)} of them on {conveyor}; 5 at least are needed")
            value, unc = _fit_range(x, rng)
        else:
            x = _signal(signals, f"conveyor-{index}", "speed", running_only=True)
            if len(x) < 5:
                raise CalibrationError(f"{name}: the log has {len(x)} readings of conveyor-{index}.speed while it runs")
            value = float(np.median(x))
            unc = float(np.std([np.median(rng.choice(x, len(x))) for _ in range(BOOTSTRAP)]))
        fits.append(Fit(name, value, unc, len(x), before))
    return fits


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
    """A copy of the layout ``layout_data`` with the fitted values in place."""
    data = json.loads(json.dumps(layout_data))
    for f in fits:
        section, index, field = f.name.split(".")
        data[section][int(index)][field] = f.value
    return data


def relative_error(value, truth) -> float:
    """The largest |value - truth| / |truth| over a value's parts."""
    vs, ts = (value, truth) if isinstance(value, list) else ([value], [truth])
    return max(abs(v - t) / abs(t) if t else math.inf for v, t in zip(vs, ts, strict=True))
