"""Speed figures for an env: raw physics, env steps, overhead ratio, cameras, vector envs.

Each figure is printed as one line ``name value unit`` so scripts can parse it. Ratios are taken
against a baseline measured in the same run; single-env figures are medians of several repeats.
Vector envs are measured over whole episodes beside the machine's ceiling: as many independent
processes, each stepping its own env with no vector env and no synchronisation.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator

import gymnasium as gym
import numpy as np

from twin.sensors import Camera


def _median_rate(fn: Callable[[], None], n: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _random_actions(env: gym.Env, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(n, *env.action_space.shape)).astype(np.float32)


def _plain_step_rate(env: gym.Env, steps: int, repeats: int) -> float:
    """Median env steps/s of any env under random actions."""
    rates = []
    for r in range(repeats):
        env.reset(seed=r)
        env.action_space.seed(r)
        t0 = time.perf_counter()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def _env_step_rate(env: gym.Env, steps: int, repeats: int) -> tuple[float, float, int]:
    """Median env steps/s, median ratio of env step time to the physics inside it, and the steps
    each repeat ran.

    Each repeat runs whole episodes under random actions, from a seeded reset to their end (as
    many as it takes to reach ``steps``), so the busy middle and end of an episode count as much
    as the quiet start. The physics time is the time spent in ``stepSimulation`` during these
    very steps, so both sides of the ratio see the same scene states.
    """
    world = env.unwrapped.twin.world
    horizon = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else steps
    actions = _random_actions(env, steps + horizon, 0)
    rates, ratios = [], []
    n = 0
    for r in range(repeats):
        env.reset(seed=r)
        world.physics_time = 0.0
        n, done = 0, False
        t0 = time.perf_counter()
        while n < steps or not done:
            if done:
                env.reset()
            _, _, term, trunc, _ = env.step(actions[n])
            done = term or trunc
            n += 1
        total = time.perf_counter() - t0
        rates.append(n / total)
        ratios.append(total / world.physics_time)
    return statistics.median(rates), statistics.median(ratios), n


def _env_actions(seed: int, steps: int, dim: int) -> np.ndarray:
    """The random actions of the env seeded ``seed``: the same in the ceiling and in the pool."""
    return np.random.default_rng([seed, 7]).uniform(-1, 1, (steps, dim)).astype(np.float32)


def _solo(env_id: str, seeds: list[int], steps: int, start, out) -> None:
    """One ceiling process: one env, no vector env, no synchronisation, stepping the episodes of
    the envs ``seeds`` (each reset with its seed and run ``steps`` steps) one after the other."""
    from agents.collect.group import single_threaded

    single_threaded()
    env = gym.make(env_id)
    plans = [(seed, _env_actions(seed, steps, env.action_space.shape[0])) for seed in seeds]
    start.wait()
    t0 = time.perf_counter()
    for seed, actions in plans:
        env.reset(seed=seed)
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
    out.put(len(seeds) * steps / (time.perf_counter() - t0))
    env.close()


def ceiling_rate(env_id: str, procs: int, envs_per_proc: int, steps: int) -> float:
    """The machine's ceiling: ``procs`` independent processes, each doing the physics of one pool
    worker (its envs' episodes, same seeds and actions, one after the other); summed rates."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    ps = [
        ctx.Process(
            target=_solo,
            args=(env_id, list(range(i * envs_per_proc, (i + 1) * envs_per_proc)), steps, start, out),
            daemon=True,
        )
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    start.set()
    rates = [out.get(timeout=3600) for _ in ps]
    for p in ps:
        p.join()
    return float(sum(rates))


def pool_rate(env_id: str, workers: int, envs_per_worker: int, steps: int, mode: str) -> float:
    """Env steps/s of a worker pool stepping each env ``steps`` steps (env ``e`` seeded ``e``).

    ``async``: the learner acts on whichever workers have finished (as the agents collect); an
    env stops at its last step and the figure waits for the last one. ``sync``: every env in
    lock-step (Gymnasium's ``step``).
    """
    from agents.collect.vec import make_vec_env

    n = workers * envs_per_worker
    pool = make_vec_env(env_id, n, workers=workers)
    try:
        pool.reset(seed=0)
        dim = pool.single_action_space.shape[0]
        plans = np.stack([_env_actions(e, steps, dim) for e in range(n)])  # [env, step, dim]
        done = np.zeros(n, dtype=np.int64)
        all_ids = np.arange(n)
        t0 = time.perf_counter()
        if mode == "sync":
            for t in range(steps):
                pool.step(plans[:, t])
        else:
            pool.send(plans[:, 0], all_ids)
            in_flight = n
            while in_flight:
                ids = pool.recv(min_envs=1).env_ids  # one or more slots, each at its own step
                done[ids] += 1
                go = ids[done[ids] < steps]  # whole slots: a slot's envs step together
                if len(go):
                    pool.send(plans[go, done[go]], go)
                in_flight -= len(ids) - len(go)
        return n * steps / (time.perf_counter() - t0)
    finally:
        pool.close()


def run_bench(
    env_id: str,
    steps: int = 300,
    repeats: int = 5,
    max_procs: int | None = None,
    envs_per_worker: int = 4,
    episodes: int = 1,
    every_count: bool = True,
) -> Iterator[tuple[str, float, str]]:
    """Yield ``(name, value, unit)`` figures for ``env_id``; the vector-env figures at 1, 2, 4, ...
    processes up to ``max_procs``, or at ``max_procs`` alone without ``every_count``."""
    env = gym.make(env_id)
    max_steps = env.spec.max_episode_steps if env.spec else None
    try:
        twin = getattr(env.unwrapped, "twin", None)
        if twin is None:  # another package's env: no twin to look inside
            yield "env_steps_per_s", _plain_step_rate(env, steps, repeats), "steps/s"
        else:
            yield from _twin_figures(env, twin, steps, repeats)
    finally:
        env.close()
    yield from _pool_figures(env_id, max_steps, max_procs, envs_per_worker, episodes, every_count)


def _twin_figures(env: gym.Env, twin, steps: int, repeats: int) -> Iterator[tuple[str, float, str]]:
    # Raw rate of the env's own scene, frozen mid-episode (parts on the belt, robot moving).
    env.reset(seed=0)
    for a in _random_actions(env, 60, 1):
        env.step(a)
    state = twin.world.save_state()
    raw = _median_rate(twin.world.p.stepSimulation, steps * 4, repeats)
    twin.world.restore_state(state)
    yield "physics_steps_per_s", raw, "steps/s"
    env_rate, ratio, n = _env_step_rate(env, steps, repeats)
    yield "env_steps_per_s", env_rate, "steps/s"
    yield "env_steps_per_repeat", n, "steps"
    yield "substeps_per_env_step", twin.world.substeps, "steps"
    yield "physics_steps_per_s_in_env", env_rate * twin.world.substeps * ratio, "steps/s"
    yield "overhead_ratio", ratio, "x"
    for w, h in ((84, 84), (640, 480)):
        cam = Camera(twin.world, env.unwrapped.task_camera_config(), w, h)
        yield f"camera_fps_{w}x{h}", _median_rate(cam.rgb, 20 if w > 100 else 100, repeats), "frames/s"
    yield "renderer_egl", float(twin.world.egl), "bool"
    if "rgb" in getattr(env.unwrapped.task, "obs_modes", ()):
        yield from _image_figures(env.spec.id, env_rate, steps, repeats)


def _image_figures(env_id: str, state_rate: float, steps: int, repeats: int) -> Iterator[tuple[str, float, str]]:
    """The image observation's cost: each camera's frames/s at the policy's size as the ``rgb``
    mode renders it (the arm's collision meshes), the env's steps/s in that mode, and the share of
    an ``rgb`` step that rendering takes (against the same env's state steps/s)."""
    env = gym.make(env_id, obs_mode="rgb")
    try:
        side = env.unwrapped._image_size
        env.reset(seed=0)
        for a in _random_actions(env, 60, 1):
            env.step(a)
        for name, cam in env.unwrapped._obs_cams.items():
            rate = _median_rate(lambda cam=cam: cam.rgb((side, side)), 100, repeats)
            yield f"rgb_camera_fps_{name}_{side}x{side}", rate, "frames/s"
        rgb_rate, _, _ = _env_step_rate(env, steps, repeats)
        yield "rgb_env_steps_per_s", rgb_rate, "steps/s"
        yield "rgb_render_share_of_step", max(0.0, 1.0 - rgb_rate / state_rate), "share"
    finally:
        env.close()


def _pool_figures(
    env_id: str,
    max_steps: int | None,
    max_procs: int | None,
    envs_per_worker: int,
    episodes: int,
    every_count: bool = True,
) -> Iterator[tuple[str, float, str]]:
    # Vector envs over whole episodes (random actions end ConveyorPick's episodes after ~500-640
    # steps), beside the ceiling measured in the same run: as many independent processes, each
    # doing exactly one pool worker's physics (the same episodes, seeds and actions) on its own
    # env, measured before and after the pool (the mean of the two).
    max_procs = max_procs or os.cpu_count() or 1
    counts = sorted({1, 2, 4, 8, 16, max_procs} & set(range(1, max_procs + 1))) if every_count else [max_procs]
    per_env = episodes * (max_steps or 200)
    yield "whole_episode_steps_per_env", per_env, "steps"
    yield "envs_per_worker", envs_per_worker, "envs"
    for n in counts:
        before = ceiling_rate(env_id, n, envs_per_worker, per_env)
        rates = {mode: pool_rate(env_id, n, envs_per_worker, per_env, mode) for mode in ("async", "sync")}
        ceiling = (before + ceiling_rate(env_id, n, envs_per_worker, per_env)) / 2
        yield f"ceiling_steps_per_s_{n}proc", ceiling, "steps/s"
        for mode, rate in rates.items():
            yield f"pool_{mode}_steps_per_s_{n}proc", rate, "steps/s"
            yield f"pool_{mode}_vs_ceiling_{n}proc", rate / ceiling, "x"
