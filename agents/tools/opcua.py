"""``twin serve-opcua``: a running twin (a cell worked by its expert, a cell replaying a plant's
log, or a line) served over OPC UA at the control rate, paced to real time (or faster)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

KPI_UNITS_CELL = {"throughput": "parts/h", "parts_placed": "parts", "energy": "J", "cycle_time_mean": "s"}
KPI_UNITS_LINE = {
    "throughput": "parts/h",
    "wip": "parts",
    "lead_time_mean": "s",
    "good": "parts",
    "scrap": "parts",
    "energy": "J",
}


class Running:
    """What is being served: how to step it, its twins, its clock and its KPIs.

    Args:
        target: An env id (its expert works the cell, episode after episode) or a line.
        seed: The first episode's seed (the line's seed).
        replay: ``twin.telemetry.replay.plan``'s episodes: the cell's part arrivals, machine
            cycles, breakdowns and belts come from a plant log, one episode after another, each
            seeded with the log's episode number; serving ends with the last.
        env_kwargs: Keyword arguments for the cell's env (the log's layout).
    """

    def __init__(self, target: str, seed: int, replay: list | None = None, env_kwargs: dict | None = None) -> None:
        import gymnasium as gym

        import envs
        from twin.line import find_line, load_line

        self.seed = seed
        self.line = None
        self.replay = replay
        self.finished = False
        """A replay's last episode has ended."""
        try:
            path = find_line(target) if not _looks_like_env(target) else None
        except FileNotFoundError:
            path = None
        if path is not None:
            from envs.line import PhysicsLine

            self.line = PhysicsLine(load_line(path), path)
            self.line.start(seed)
            self.cells = [(c.name, e.twin) for c, e in zip(self.line.cells, self.line.envs, strict=True)]
            self.dt = self.line.dt
        else:
            env_id = envs.check_env_id(target)
            self.env = envs.make(env_id, **(env_kwargs or {})).unwrapped
            self.expert = envs.make_expert(env_id, self.env)
            self.limit = gym.spec(env_id).max_episode_steps
            self.episodes, self._t0, self._steps = 0, 0.0, 0
            try:
                self._reset()
            except Exception:
                self.env.close()
                raise
            self.cells = [("", self.env.twin)]
            self.dt = self.env.twin.control_dt

    def _reset(self) -> None:
        twin = self.env.twin
        if self.replay is None:
            self.obs, _ = self.env.reset(seed=self.seed + self.episodes)
            return
        p = self.replay[self.episodes]
        twin.replay = p
        self.obs, _ = self.env.reset(seed=p.episode)
        if self.env.twin is not twin or twin.replay is not p:
            raise ValueError(
                f"{self.env.spec.id if self.env.spec else 'the env'} builds its twin again at each reset: it cannot be replayed"
            )

    def now(self) -> float:
        """Twin seconds served so far (a cell's episodes one after another)."""
        return self.line.time if self.line is not None else self._t0 + self.env.twin.sim_time

    def step(self) -> None:
        if self.line is not None:
            self.line.step()
            return
        self.obs, _, terminated, _, _ = self.env.step(self.expert(self.obs))
        self._steps += 1
        if terminated or (self.limit and self._steps >= self.limit):  # the next episode, as a plant's next shift
            self.episodes += 1
            self._steps = 0
            if self.replay is not None and self.episodes >= len(self.replay):
                self.finished = True
                return
            self._t0 += self.env.twin.sim_time  # the served clock runs on across episodes
            self._reset()
            if hasattr(self.expert, "reset"):
                self.expert.reset()

    def kpi_objects(self) -> list[tuple[str, str, dict[str, tuple[float, str]]]]:
        """(folder, object, values) of the KPI and buffer objects to add."""
        if self.line is None:
            return [("", "kpis", {k: (0.0, u) for k, u in KPI_UNITS_CELL.items()})]
        out = [("", "line", {**{k: (0.0, u) for k, u in KPI_UNITS_LINE.items()}})]
        for k, b in enumerate(self.line.buffers):
            out.append(("", f"buffer-{k}", {"level": (0.0, "parts"), "capacity": (float(b.capacity), "parts")}))
        return out

    def values(self, kpis: bool) -> dict[str, Any]:
        """``folder/object/name -> value``: buffers every step, KPIs when ``kpis``."""
        out: dict[str, Any] = {}
        if self.line is not None:
            for k, b in enumerate(self.line.buffers):
                out[f"/buffer-{k}/level"] = float(len(self.line.buffer_parts[k]))
                out[f"/buffer-{k}/capacity"] = float(b.capacity)
            if kpis and self.line.time > 0:
                k = self.line.kpis()
                out |= {f"/line/{name}": k[name] for name in KPI_UNITS_LINE}
        elif kpis and self.now() > 0:
            k = self.env.twin.kpis()
            out |= {f"/kpis/{name}": k.get(name, float("nan")) for name in KPI_UNITS_CELL}
        return out

    def close(self) -> None:
        if self.line is not None:
            self.line.close()
        else:
            self.env.close()


def _looks_like_env(target: str) -> bool:
    import envs

    return target in envs.ENV_IDS or target in getattr(envs, "SKILL_IDS", ()) or ":" in target


async def serve(
    target: str,
    port: int,
    *,
    allow_writes: bool = False,
    seed: int = 0,
    speed: float = 1.0,
    duration: float | None = None,
    on_ready: Callable[[Any], None] | None = None,
    stop: asyncio.Event | None = None,
    replay: list | None = None,
    env_kwargs: dict | None = None,
) -> dict[str, float]:
    """Serve ``target`` (an env id or a line) until ``duration`` twin seconds have run, ``stop``
    is set or a ``replay``'s last episode has ended (see ``Running``); ``speed`` is twin seconds
    per wall second (0: as fast as it runs). Returns counters."""
    from twin.opcua import TwinServer

    running = Running(target, seed, replay, env_kwargs)
    srv = TwinServer(running.cells, port, allow_writes, now=running.now)
    try:
        await srv.start()
        for folder, obj, values in running.kpi_objects():
            await srv.add_values(folder, obj, values)
        srv.guard_writes()
        await srv.publish(running.values(kpis=True))
        if on_ready is not None:
            on_ready(srv)
        t0, steps, next_kpi = time.perf_counter(), 0, 1.0
        while (
            not (stop is not None and stop.is_set())
            and not running.finished
            and (duration is None or running.now() < duration - 1e-9)
        ):
            srv.apply_writes()
            running.step()
            steps += 1
            due = running.now() >= next_kpi
            if due:
                next_kpi += 1.0
            await srv.publish(running.values(kpis=due))
            if speed > 0:
                ahead = t0 + running.now() / speed - time.perf_counter()
                await asyncio.sleep(max(0.0, ahead))
            else:
                await asyncio.sleep(0)  # let the server answer its clients between steps
        wall = time.perf_counter() - t0
        return {
            "steps": steps,
            "episodes": running.episodes if running.line is None else 0,
            "twin_s": running.now(),
            "wall_s": wall,
            "steps_per_s": steps / wall if wall > 0 else 0.0,
            "updates": srv.updates,
            "writes_accepted": srv.writes_accepted,
            "writes_refused": srv.writes_refused,
        }
    finally:
        await srv.stop()
        running.close()


__all__ = ["Running", "serve"]
