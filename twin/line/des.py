"""The fast line model: a discrete-event simulation (SimPy) of a line whose cells draw their
effective process times from a fit to the physics (``twin.line.fit``).

Each cell is one server fed FIFO, taking in at most ``wip_limit`` parts at once; a finished
part leaves when the buffer after it has room (the buffer's capacity counts parts in transfer),
so a full buffer blocks the cell and an empty one starves the next. A cell the fit saw stop
(a jammed belt, a broken-down machine) stops at exponential intervals of its fitted mean uptime,
for a repair time drawn from those seen; its work in hand waits. A part coming into a cell carries
a defect at the rate of the cell's input, and the cell scraps it at the rate fitted for defective
or sound parts (a model with one ``scrap_rate`` per cell scraps at that). The source offers a part
``source.interval`` after the last one went in. The events are the physics run's
(``twin.line.kpis``), so the same KPI function scores both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.line.kpis import LineEvent, line_kpis
from twin.line.schema import Line


def _simpy():
    try:
        import simpy
    except ImportError:
        raise ImportError(
            "the line model needs SimPy: pip install 'factory-twin[line]' (or pip install simpy)"
        ) from None
    return simpy


def _scrap_table(cell: dict[str, Any]) -> tuple[float, float, float]:
    """(input defect rate, scrap share of defective parts, of sound ones) of a fitted cell."""
    flat = float(cell.get("scrap_rate", 0.0))
    rate = cell.get("defect_rate")
    if rate is None:  # a model fitted without the defects: one scrap rate for every part
        return 0.0, flat, flat
    if_bad, if_sound = cell.get("scrap_if_defective"), cell.get("scrap_if_sound")
    return (
        float(rate),
        flat if if_bad is None else float(if_bad),
        flat if if_sound is None else float(if_sound),
    )


def run_des(line: Line, model: dict[str, Any], seed: int, duration: float) -> tuple[list[LineEvent], dict[str, float]]:
    """Simulate ``line`` for ``duration`` seconds with the fitted ``model`` (``twin.line.fit``'s
    ``cells`` table); returns the events and the KPIs."""
    simpy = _simpy()
    cells, buffers = line.ordered()
    names = [c.name for c in cells]
    fitted = model["cells"]
    missing = [n for n in names if n not in fitted]
    if missing:
        raise ValueError(f"the fitted model has no cell {', '.join(map(repr, missing))} (it has {sorted(fitted)})")
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    events: list[LineEvent] = []
    slots = [simpy.Container(env, capacity=c.wip_limit, init=c.wip_limit) for c in cells]
    room = [simpy.Container(env, capacity=b.capacity, init=b.capacity) for b in buffers]
    stores = [simpy.Store(env) for _ in buffers]
    queues = [simpy.Store(env) for _ in cells]
    ept = [np.asarray(fitted[n]["ept"], dtype=float) for n in names]
    scrap = [_scrap_table(fitted[n]) for n in names]
    defective: list[set[int]] = [set() for _ in names]
    last = len(cells) - 1
    lo, hi = line.source.interval

    def draw_defect(k: int, pid: int) -> str:
        rate = scrap[k][0]
        if rate and rng.uniform() < rate:
            defective[k].add(pid)
            return "defective"
        return ""

    def source():
        pid = 0
        while True:
            yield env.timeout(rng.uniform(lo, hi))
            yield slots[0].get(1)
            events.append(LineEvent(env.now, "entered", pid, names[0], draw_defect(0, pid)))
            yield queues[0].put(pid)
            pid += 1

    def admit(k: int):
        j = k - 1
        while True:
            ready, pid = yield stores[j].get()
            if ready > env.now:
                yield env.timeout(ready - env.now)
            yield slots[k].get(1)
            yield room[j].put(1)
            events.append(LineEvent(env.now, "entered", pid, names[k], draw_defect(k, pid)))
            yield queues[k].put(pid)

    def hand_off(k: int, pid: int):
        yield room[k].get(1)
        events.append(LineEvent(env.now, "left", pid, names[k]))
        yield stores[k].put((env.now + buffers[k].transfer_time, pid))
        yield slots[k].put(1)

    stopped_until = [0.0] * len(cells)
    servers: list = [None] * len(cells)
    working = [False] * len(cells)  # a server is interrupted only inside its work

    def work(k: int, seconds: float):
        """``seconds`` of the cell's work, paused while it is stopped."""
        left = seconds
        while left > 1e-12:
            if stopped_until[k] > env.now:
                yield env.timeout(stopped_until[k] - env.now)
                continue
            t0 = env.now
            working[k] = True
            try:
                yield env.timeout(left)
                left = 0.0
            except simpy.Interrupt:
                left -= env.now - t0
            finally:
                working[k] = False

    def failures(k: int, mean_up: float, repairs: np.ndarray):
        while True:
            yield env.timeout(rng.exponential(mean_up))
            stopped_until[k] = env.now + float(rng.choice(repairs))
            if working[k]:
                servers[k].interrupt()
            yield env.timeout(stopped_until[k] - env.now)

    def server(k: int):
        while True:
            pid = yield queues[k].get()
            yield from work(k, float(rng.choice(ept[k])))
            if pid in defective[k]:
                defective[k].discard(pid)
                p = scrap[k][1]
            else:
                p = scrap[k][2]
            bad = p > 0 and rng.uniform() < p
            events.append(LineEvent(env.now, "finished", pid, names[k], "scrap" if bad else "good"))
            if bad or k == last:
                events.append(LineEvent(env.now, "left", pid, names[k]))
                events.append(LineEvent(env.now, "exited", pid, names[k], "scrap" if bad else "good"))
                yield slots[k].put(1)
            else:
                env.process(hand_off(k, pid))

    env.process(source())
    for k, n in enumerate(names):
        servers[k] = env.process(server(k))
        mean_up, repairs = fitted[n].get("uptime_between_s"), fitted[n].get("repair_s") or []
        if mean_up and repairs:
            env.process(failures(k, float(mean_up), np.asarray(repairs, dtype=float)))
        if k > 0:
            env.process(admit(k))
    env.run(until=duration)
    energy = {
        n: float(fitted[n].get("energy_per_part", 0.0)) * sum(e.kind == "finished" and e.cell == n for e in events)
        for n in names
    }
    kpis = line_kpis(events, names, duration, {c.name: c.ideal_cycle_time for c in cells}, energy)
    return events, kpis
