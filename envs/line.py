"""A line of cells in physics: each cell its own env and twin, worked by its scripted expert, the
line's source and buffers moving parts between them on one clock (``twin.line`` has the line's
layout, events and KPIs)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.line.kpis import LineEvent, line_kpis
from twin.line.ports import CellPort, LineError
from twin.line.schema import Line, find_line


@dataclass
class LineRun:
    """What one run of a line produced."""

    events: list[LineEvent]
    duration: float
    cells: list[str]
    kpis: dict[str, float]
    energy: dict[str, float] = field(default_factory=dict)
    cell_kpis: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each cell's own twin KPIs (``Twin.kpis``) over the run."""
    stoppages: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Each cell's stoppages (a conveyor jammed, a machine broken down): (start, end) in line
    seconds, from its twin's event log (an open one ends with the run)."""
    defect_rates: dict[str, float] = field(default_factory=dict)
    """Each cell's input defect rate: the share of parts the line brings in carrying a defect
    (its feeder's ``defect_rate`` in the layout; 0 for a tray)."""


def _defect(part) -> str:
    return "defective" if part.defect is not None else ""


class PhysicsLine:
    """A line built in physics, ready to run from a seed.

    Args:
        line: The validated line.
        source: The line file it came from (cell layout paths are relative to it).
    """

    def __init__(self, line: Line, source: str | Path | None = None) -> None:
        import envs

        self.line = line
        self.cells, self.buffers = line.ordered()
        base = Path(source).parent if source is not None else None
        self.envs, self.experts, self.ports = [], [], []
        env_ids = cell_env_ids(line)
        index = {c.name: i for i, c in enumerate(line.cells)}  # errors name a cell as the file lists it
        try:
            for c in self.cells:
                env_id, where = env_ids[c.name], f"line.cells[{index[c.name]}] ({c.name!r})"
                kwargs = dict(c.knobs)
                if c.faults:
                    kwargs["faults"] = list(c.faults)
                if c.layout is not None:
                    path = Path(c.layout)
                    kwargs["layout"] = str(base / path if base is not None and not path.is_absolute() else path)
                try:
                    env = envs.make(env_id, **kwargs).unwrapped
                except (ValueError, FileNotFoundError) as exc:
                    raise LineError(f"{where}: {exc}") from None
                self.envs.append(env)
                if getattr(env.task, "drives", "arm") != "arm":
                    raise LineError(f"{where}: {env_id} is not a cell of parts a line can feed")
                self.experts.append(envs.make_expert(env_id, env))
                env.reset(seed=0)
                self.ports.append(CellPort(env.twin, c.name))
            dts = {round(e.twin.control_dt, 9) for e in self.envs}
            if len(dts) != 1:
                rates = ", ".join(
                    f"{c.name}: {1 / e.twin.control_dt:g} Hz" for c, e in zip(self.cells, self.envs, strict=True)
                )
                raise LineError(f"the cells' control rates differ ({rates}); a line steps its cells together")
        except Exception:
            self.close()
            raise
        self.dt = self.envs[0].twin.control_dt

    def run(self, seed: int, duration: float, progress: Callable[[float], None] | None = None) -> LineRun:
        """Run the line for ``duration`` seconds of line time from empty, seeded by ``seed``."""
        self.start(seed)
        for _ in range(round(duration / self.dt)):
            self.step()
            if progress is not None:
                progress(self.dt)
        return self.result()

    def start(self, seed: int) -> None:
        """Empty every cell and buffer and start the line's clock at 0, seeded by ``seed``."""
        self._rng = np.random.default_rng(seed)
        self._cell_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(self.cells))]
        for k, (env, port) in enumerate(zip(self.envs, self.ports, strict=True)):
            env.reset(seed=int(self._cell_rngs[k].integers(2**31)))
            port.empty()
            if hasattr(self.experts[k], "reset"):
                self.experts[k].reset()
        self._energy0 = [e.twin.energy for e in self.envs]
        self.events: list[LineEvent] = []
        self.inside: list[dict[str, int]] = [{} for _ in self.cells]  # body name -> line part number
        self._done: list[deque[tuple[str, int]]] = [deque() for _ in self.cells]  # finished, waiting to leave
        self.buffer_parts: list[deque[tuple[float, int]]] = [deque() for _ in self.buffers]  # (ready at, part)
        lo, hi = self.line.source.interval
        self._next_offer = float(self._rng.uniform(lo, hi))
        self._next_part = 0
        self._obs = [env._obs() for env in self.envs]
        self.steps = 0

    @property
    def time(self) -> float:
        """Line seconds since ``start``."""
        return self.steps * self.dt

    def step(self) -> None:
        """One control step of the whole line: the source, the buffers' hand-overs, the cells'
        finished parts leaving, then every cell's expert acting and its physics stepping."""
        t, names, inside, events = self.time, [c.name for c in self.cells], self.inside, self.events
        if t + 1e-9 >= self._next_offer and len(inside[0]) < self.cells[0].wip_limit:
            part = self.ports[0].admit(self._cell_rngs[0])
            if part is not None:
                inside[0][part.name] = self._next_part
                events.append(LineEvent(t, "entered", self._next_part, names[0], _defect(part)))
                self._next_part += 1
                lo, hi = self.line.source.interval
                self._next_offer = t + float(self._rng.uniform(lo, hi))
        for j, buf in enumerate(self.buffer_parts):
            k = j + 1
            while buf and buf[0][0] <= t + 1e-9 and len(inside[k]) < self.cells[k].wip_limit:
                part = self.ports[k].admit(self._cell_rngs[k])
                if part is None:
                    break
                _, pid = buf.popleft()
                inside[k][part.name] = pid
                events.append(LineEvent(t, "entered", pid, names[k], _defect(part)))
        for k, port in enumerate(self.ports):
            twin, done = port.twin, self._done[k]
            for body, pid in list(inside[k].items()):
                if any(b == body for b, _ in done):
                    continue
                outcome = port.outcome(twin.part(body))
                if outcome is None:
                    continue
                events.append(LineEvent(t, "finished", pid, names[k], outcome))
                if outcome == "scrap":  # rejected or lost: out of the line at once
                    self._leave(k, body, pid, t, "scrap")
                else:
                    done.append((body, pid))
            last = k == len(self.cells) - 1
            while done:
                body, pid = done[0]
                if not last and len(self.buffer_parts[k]) >= self.buffers[k].capacity:
                    break  # blocked: the buffer after it is full
                done.popleft()
                self._leave(k, body, pid, t, "good" if last else None)
                if not last:
                    self.buffer_parts[k].append((t + self.buffers[k].transfer_time, pid))
        for k, env in enumerate(self.envs):
            self._obs[k], *_ = env.step(self.experts[k](self._obs[k]))
        self.steps += 1

    def kpis(self) -> dict[str, float]:
        """The line's KPIs so far."""
        names = [c.name for c in self.cells]
        energy = {n: e.twin.energy - e0 for n, e, e0 in zip(names, self.envs, self._energy0, strict=True)}
        return line_kpis(self.events, names, self.time, {c.name: c.ideal_cycle_time for c in self.cells}, energy)

    def result(self) -> LineRun:
        names = [c.name for c in self.cells]
        energy = {n: e.twin.energy - e0 for n, e, e0 in zip(names, self.envs, self._energy0, strict=True)}
        cell_kpis = {n: env.twin.kpis() for n, env in zip(names, self.envs, strict=True)}
        stops = {n: stoppages(env.twin.log.events, self.time) for n, env in zip(names, self.envs, strict=True)}
        rates = {n: p.defect_rate for n, p in zip(names, self.ports, strict=True)}
        return LineRun(list(self.events), self.time, names, self.kpis(), energy, cell_kpis, stops, rates)

    def _leave(self, k: int, body: str, pid: int, t: float, exit_as: str | None) -> None:
        self.events.append(LineEvent(t, "left", pid, self.cells[k].name))
        if exit_as is not None:
            self.events.append(LineEvent(t, "exited", pid, self.cells[k].name, exit_as))
        del self.inside[k][body]
        twin = self.ports[k].twin
        twin.retire(twin.part(body))

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def cell_env_ids(line: Line) -> dict[str, str]:
    """Each cell's env id, checked to be one of this package's cell tasks (a LineError names the
    cell as the file lists it otherwise)."""
    import envs

    out = {}
    for i, c in enumerate(line.cells):
        where = f"line.cells[{i}] ({c.name!r}).env"
        try:
            env_id = envs.check_env_id(c.env)
        except ValueError as exc:
            raise LineError(f"{where}: {exc}") from None
        if not envs.is_factory_env(env_id):
            raise LineError(f"{where}: {env_id} is not a Factory Twin cell task")
        out[c.name] = env_id
    return out


STOPPING = ("conveyor_jam", "machine_breakdown")
"""Fault families that stop a cell's equipment (the line model's failures)."""


def stoppages(events, end: float) -> list[tuple[float, float]]:
    """The (start, end) of each stopping fault in a cell's event log, in time order."""
    open_: dict[tuple[str, str | None], float] = {}
    out = []
    for e in events:
        family = (e.detail or "").split(":")[0]
        if family not in STOPPING:
            continue
        key = (family, e.station)
        if e.kind == "fault_start":
            open_[key] = e.t
        elif e.kind == "fault_end" and key in open_:
            out.append((open_.pop(key), e.t))
    out += [(t0, end) for t0 in open_.values()]
    return sorted(out)


def check_knobs(line: Line, source: str | Path | None = None) -> None:
    """Refuse cell settings (``knobs``) their tasks do not take or take only within bounds, before
    any physics is built (the message names the cell and the setting)."""
    import envs
    from twin.layout import find_layout, load_layout

    base = Path(source).parent if source is not None else None
    env_ids = cell_env_ids(line)
    for k, c in enumerate(line.cells):
        if not c.knobs:
            continue
        task = envs.TASKS[env_ids[c.name]]
        knobs = {n: v for n, v in c.knobs.items() if n not in task.task_knobs}
        ref = c.layout if c.layout is None or base is None or Path(c.layout).is_absolute() else str(base / c.layout)
        try:
            task.adapt_layout(load_layout(find_layout(ref if ref is not None else task.layout)), **knobs)
        except (ValueError, FileNotFoundError) as exc:
            raise LineError(f"line.cells[{k}] ({c.name!r}).knobs: {exc}") from None


def run_physics(
    line: Line | str | Path, seed: int, duration: float, progress: Callable[[float], None] | None = None
) -> LineRun:
    """Build ``line`` (a Line, a line file or a bundled line's name) in physics, run it once and close it."""
    from twin.line.schema import load_line

    source = None
    if not isinstance(line, Line):
        source = find_line(line)
        line = load_line(source)
    pl = PhysicsLine(line, source)
    try:
        return pl.run(seed, duration, progress)
    finally:
        pl.close()


__all__ = ["LineError", "LineRun", "PhysicsLine", "cell_env_ids", "check_knobs", "run_many", "run_physics"]


def _worker(job: tuple[str, int, float], ticks=None) -> dict:
    path, seed, duration = job
    sent = [0.0]

    def tick(dt: float) -> None:
        sent[0] += dt
        if ticks is not None and sent[0] >= 5.0:  # a line-time tick every 5 s keeps the queue quiet
            ticks.put(sent[0])
            sent[0] = 0.0

    run = run_physics(path, seed, duration, tick)
    if ticks is not None and sent[0] > 0:
        ticks.put(sent[0])
    return _as_dict(seed, run)


def _as_dict(seed: int, run: LineRun) -> dict:
    """A run as ``run_many`` returns it (plain data, so it crosses process boundaries)."""
    return {
        "seed": seed,
        "events": run.events,
        "energy": run.energy,
        "kpis": run.kpis,
        "cell_kpis": run.cell_kpis,
        "stoppages": run.stoppages,
        "defect_rates": run.defect_rates,
    }


def _init(queue) -> None:
    global _TICKS
    _TICKS = queue


_TICKS = None


def _pooled(job):
    return _worker(job, _TICKS)


def run_many(
    line: str | Path,
    seeds: list[int],
    duration: float,
    workers: int = 1,
    progress: Callable[[float], None] | None = None,
) -> list[dict]:
    """Physics runs of the line file ``line``, one per seed, on ``workers`` processes; each a dict
    of ``seed``, ``events``, ``energy``, ``kpis``, ``cell_kpis``, ``stoppages`` and
    ``defect_rates``, in the seeds' order.
    ``progress(seconds)`` is told the line time done as it goes."""
    path = str(find_line(line))
    jobs = [(path, s, duration) for s in seeds]
    if workers <= 1 or len(seeds) == 1:
        return [_worker(j) if progress is None else _direct(j, progress) for j in jobs]
    import multiprocessing as mp
    import queue as queues

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    results: dict[int, dict] = {}
    with ctx.Pool(min(workers, len(seeds)), initializer=_init, initargs=(q,)) as pool:
        pending = pool.map_async(_pooled, jobs)
        while True:
            try:
                done = q.get(timeout=0.5)
            except queues.Empty:
                done = 0.0
            if done and progress is not None:
                progress(done)
            if pending.ready():
                while not q.empty():
                    left = q.get()
                    if progress is not None:
                        progress(left)
                break
        for r in pending.get():
            results[r["seed"]] = r
    return [results[s] for s in seeds]


def _direct(job, progress) -> dict:
    path, seed, duration = job
    run = run_physics(path, seed, duration, progress)
    return _as_dict(seed, run)
