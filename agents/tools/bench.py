"""Speed figures for an env: raw physics, env steps, overhead ratio, cameras, vector scaling.

Each figure is printed as one line ``name value unit`` so scripts can parse it. Ratios are taken
against a baseline measured in the same run; every figure is the median of several repeats.
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


def _env_step_rate(env: gym.Env, steps: int, repeats: int) -> tuple[float, float]:
    """Median env steps/s and median ratio of env step time to the physics inside it.

    The physics time is the time spent in ``stepSimulation`` during these very steps, so both
    sides of the ratio see the same scene states.
    """
    world = env.unwrapped.twin.world
    actions = _random_actions(env, steps, 0)
    rates, ratios = [], []
    for r in range(repeats):
        env.reset(seed=r)
        world.physics_time = 0.0
        t0 = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        total = time.perf_counter() - t0
        rates.append(steps / total)
        ratios.append(total / world.physics_time)
    return statistics.median(rates), statistics.median(ratios)


def _vector_rate(env_id: str, n_envs: int, steps: int) -> float:
    vec = gym.vector.AsyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(n_envs)], shared_memory=True, context="fork"
    )
    try:
        vec.reset(seed=0)
        actions = _random_actions(vec, steps, 0)
        for a in actions[:5]:  # warm up the workers
            vec.step(a)
        t0 = time.perf_counter()
        for a in actions:
            vec.step(a)
        return steps * n_envs / (time.perf_counter() - t0)
    finally:
        vec.close()


def run_bench(
    env_id: str, steps: int = 300, repeats: int = 5, max_procs: int | None = None
) -> Iterator[tuple[str, float, str]]:
    """Yield ``(name, value, unit)`` figures for ``env_id``."""
    env = gym.make(env_id)
    try:
        twin = env.unwrapped.twin
        # Raw rate of the env's own scene, frozen mid-episode (parts on the belt, robot moving).
        env.reset(seed=0)
        for a in _random_actions(env, 60, 1):
            env.step(a)
        state = twin.world.save_state()
        raw = _median_rate(twin.world.p.stepSimulation, steps * 4, repeats)
        twin.world.restore_state(state)
        yield "physics_steps_per_s", raw, "steps/s"
        env_rate, ratio = _env_step_rate(env, steps, repeats)
        yield "env_steps_per_s", env_rate, "steps/s"
        yield "substeps_per_env_step", twin.world.substeps, "steps"
        yield "physics_steps_per_s_in_env", env_rate * twin.world.substeps * ratio, "steps/s"
        yield "overhead_ratio", ratio, "x"
        for w, h in ((84, 84), (640, 480)):
            cam = Camera(twin.world, env.unwrapped.task_camera_config(), w, h)
            yield f"camera_fps_{w}x{h}", _median_rate(cam.rgb, 20 if w > 100 else 100, repeats), "frames/s"
        yield "renderer_egl", float(twin.world.egl), "bool"
    finally:
        env.close()
    max_procs = max_procs or os.cpu_count() or 1
    counts = sorted({1, 2, 4, 8, 16, max_procs} & set(range(1, max_procs + 1)))
    base = None
    for n in counts:
        rate = _vector_rate(env_id, n, max(steps // 2, 50))
        base = base or rate
        yield f"vector_steps_per_s_{n}proc", rate, "steps/s"
        yield f"vector_speedup_{n}proc", rate / base, "x"
