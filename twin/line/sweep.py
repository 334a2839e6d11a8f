"""What-if sweeps over a line's parameters: the parameters a sweep may vary and their bounds, the
points of a grid or a random search, and the Pareto front of the results.

A parameter is named by where it lives in the line, counting cells and buffers in line order
from 0: ``buffer.<k>.capacity``, ``buffer.<k>.transfer_time``, ``cell.<k>.wip_limit``,
``cell.<k>.ideal_cycle_time``, ``cell.<k>.<knob>`` (a setting of the cell's task, such as
ConveyorPick's ``belt_speed``; physics only, since it changes the cell's physics),
``source.interval_min`` and ``source.interval_max``. Values are checked against the line
schema's bounds, and a point is refused naming the parameter and the bound.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from twin.line.schema import Line

_NAME = re.compile(r"^(buffer|cell)\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)$|^source\.(interval_min|interval_max)$")
BUFFER_FIELDS = ("capacity", "transfer_time")
CELL_FIELDS = ("wip_limit", "ideal_cycle_time")


class SweepError(ValueError):
    """A sweep that cannot be run (names the parameter and what is wrong)."""


@dataclass(frozen=True)
class Param:
    name: str
    values: tuple[Any, ...]
    """The values a grid takes (a list given, or ``lo:hi:n`` spread evenly)."""
    low: float
    high: float
    """The range a random search draws from."""
    integer: bool = False

    @property
    def knob(self) -> bool:
        """Whether it is a task setting (it changes the cell's physics)."""
        parts = self.name.split(".")
        return parts[0] == "cell" and parts[2] not in CELL_FIELDS


def _number(text: str, name: str) -> float | int | str | bool:
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        return t
    if not math.isfinite(v):
        raise SweepError(f"--vary {name}: {text!r} is not a finite number")
    return v


def parse_vary(spec: str, line: Line) -> Param:
    """``NAME=v1,v2,...`` or ``NAME=lo:hi:n`` as a parameter of ``line``; refused naming it when
    the line has no such thing."""
    if "=" not in spec:
        raise SweepError(f"--vary {spec!r}: expected NAME=v1,v2,... or NAME=lo:hi:n")
    name, _, text = spec.partition("=")
    name = name.strip()
    m = _NAME.match(name)
    cells, buffers = line.ordered()
    if not m:
        raise SweepError(
            f"--vary {name}: not a line parameter (buffer.<k>.capacity|transfer_time, cell.<k>.wip_limit|"
            "ideal_cycle_time|<task setting>, source.interval_min|interval_max)"
        )
    if m.group(1) == "buffer":
        k, field = int(m.group(2)), m.group(3)
        if k >= len(buffers):
            raise SweepError(f"--vary {name}: the line has {len(buffers)} buffer(s), numbered from 0")
        if field not in BUFFER_FIELDS:
            raise SweepError(f"--vary {name}: a buffer has no {field!r} (it has {', '.join(BUFFER_FIELDS)})")
    elif m.group(1) == "cell":
        k = int(m.group(2))
        if k >= len(cells):
            raise SweepError(f"--vary {name}: the line has {len(cells)} cell(s), numbered from 0")
    integer = name.endswith(("capacity", "wip_limit"))
    if ":" in text:
        try:
            lo, hi, n = text.split(":")
            lo_v, hi_v, count = float(lo), float(hi), int(n)
        except ValueError:
            raise SweepError(f"--vary {name}={text}: expected lo:hi:n (two numbers and a count)") from None
        if count < 1 or count > 1000 or not (math.isfinite(lo_v) and math.isfinite(hi_v)) or hi_v < lo_v:
            raise SweepError(f"--vary {name}={text}: expected lo <= hi and a count from 1 to 1000")
        values = tuple(np.linspace(lo_v, hi_v, count).round(9).tolist())
        if integer:
            if any(v != int(v) for v in values):
                raise SweepError(f"--vary {name}={text}: {name} takes whole numbers; {values} are not all whole")
            values = tuple(int(v) for v in values)
    else:
        values = tuple(_number(v, name) for v in text.split(",") if v.strip())
        if not values:
            raise SweepError(f"--vary {name}: no values")
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    low, high = (min(nums), max(nums)) if len(nums) == len(values) else (math.nan, math.nan)
    param = Param(name, values, low, high, integer)
    for v in values:
        apply(line, {name: v})  # each value within its bounds, or refused now
    return param


def apply(line: Line, point: dict[str, Any]) -> Line:
    """``line`` with ``point``'s parameters set, validated against the line schema."""
    data = line.model_dump(by_alias=True)
    cells_order, _ = line.ordered()
    index = {c.name: i for i, c in enumerate(line.cells)}
    buf_index = {(b.from_cell): i for i, b in enumerate(line.buffers)}
    for name, value in point.items():
        parts = name.split(".")
        if parts[0] == "source":
            lo, hi = data["source"]["interval"]
            data["source"]["interval"] = [value, hi] if parts[1] == "interval_min" else [lo, value]
        elif parts[0] == "buffer":
            b = buf_index[cells_order[int(parts[1])].name]
            data["buffers"][b][parts[2]] = value
        else:
            c = index[cells_order[int(parts[1])].name]
            if parts[2] in CELL_FIELDS:
                data["cells"][c][parts[2]] = value
            else:
                data["cells"][c]["knobs"] = {**data["cells"][c]["knobs"], parts[2]: value}
    try:
        new = Line.model_validate(data)
    except ValidationError as err:
        e = err.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in e["loc"])
        raise SweepError(f"{', '.join(f'{k}={v}' for k, v in point.items())}: line.{loc}: {e['msg']}") from None
    if new.source.interval[0] > new.source.interval[1]:
        raise SweepError(f"{point}: source.interval_min is above source.interval_max ({list(new.source.interval)})")
    return new


def grid(params: list[Param]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values."""
    return [
        dict(zip([p.name for p in params], combo, strict=True))
        for combo in itertools.product(*(p.values for p in params))
    ]


def random_points(params: list[Param], budget: int, seed: int) -> list[dict[str, Any]]:
    """``budget`` points drawn uniformly within each parameter's range (a list of values: one of them)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(budget):
        point = {}
        for p in params:
            if math.isnan(p.low) or p.low == p.high:
                point[p.name] = p.values[int(rng.integers(len(p.values)))]
            elif p.integer:
                point[p.name] = int(rng.integers(int(p.low), int(p.high) + 1))
            else:
                point[p.name] = round(float(rng.uniform(p.low, p.high)), 6)
        out.append(point)
    return out


def pareto(points: list[tuple[float, float]], maximise_first: bool = True) -> list[int]:
    """Indices of the points on the Pareto front: the first value maximised (or minimised), the
    second minimised; a point is on it when no other is at least as good in both and better in one."""
    sign = -1.0 if maximise_first else 1.0
    keyed = [(sign * a, b) for a, b in points]
    front = []
    for i, (a, b) in enumerate(keyed):
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        dominated = any(
            (a2 <= a and b2 <= b) and (a2 < a or b2 < b)
            for j, (a2, b2) in enumerate(keyed)
            if j != i and math.isfinite(a2) and math.isfinite(b2)
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][1])
