"""Training-speed figures, one ``name value unit`` line each, every ratio against a baseline of the same run.

* PPO: the bare vector env's steps/s (random actions, same env count, as many steps as the PPO
  run takes, so both cover the same stretch of their episodes: physics gets dearer as parts
  arrive), then a short PPO run on the same env: its env steps/s over the whole run (collection
  and updates), the share of each iteration spent in the update, and the ratio of the training
  rate to the bare rate.
* SAC: gradient updates per second at batch 256, eager and with ``torch.compile``.

Usage: python bench/bench_train.py [--env ID] [--envs N] [--iters K] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from rich.console import Console

from agents import ppo
from agents.collect.vec import make_vec_env
from agents.common.config import make_config
from agents.common.runtime import Run, compiled, resolve_device, share_cores
from agents.sac import SACAgent, Updater


def line(name: str, value: float, unit: str) -> None:
    print(f"{name} {value:.4g} {unit}", flush=True)


def bare_rate(env_id: str, n_envs: int, env_kwargs: dict, steps: int) -> float:
    vec = make_vec_env(env_id, n_envs, env_kwargs)
    try:
        vec.reset(seed=0)
        acts = np.random.default_rng(0).uniform(-1, 1, (steps + 5, n_envs, *vec.single_action_space.shape))
        for a in acts[:5]:
            vec.step(a.astype(np.float32))
        t0 = time.perf_counter()
        for a in acts[5:]:
            vec.step(a.astype(np.float32))
        return steps * n_envs / (time.perf_counter() - t0)
    finally:
        vec.close()


def ppo_rates(env_id: str, n_envs: int, iters: int, device: str) -> dict[str, float]:
    cfg = make_config("ppo", env_id, {"n_envs": str(n_envs), "eval_episodes": "0", "device": device})
    cfg.total_steps = iters * cfg.n_steps * n_envs
    cfg.checkpoint_every = cfg.log_every = 10**12
    vec = make_vec_env(env_id, n_envs, cfg.env_kwargs)
    threads = torch.get_num_threads()
    share_cores(n_envs)  # as `twin train` does
    try:
        dev = resolve_device(device)
        with tempfile.TemporaryDirectory() as tmp:
            run = Run(tmp, cfg.total_steps, quiet=True)
            t0 = time.perf_counter()
            _, steps = ppo.train(cfg, vec, run, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            run.close()
    finally:
        vec.close()
        torch.set_num_threads(threads)
    c, u = run.timers["collect"], run.timers["update"]
    return {
        "n_steps": cfg.n_steps,
        "update_epochs": cfg.update_epochs,
        "n_minibatches": cfg.n_minibatches,
        "steps_per_s": steps / (c + u),
        "update_fraction": u / (c + u),
        "wall_steps_per_s": steps / wall,
    }


def sac_updates_per_s(
    device: torch.device, compiled_update: bool, obs_dim: int = 25, act_dim: int = 4, n: int = 300
) -> tuple[float, float]:
    cfg = make_config("sac", "FactoryReach-v0", {"device": str(device), "compile": str(compiled_update)})
    agent = SACAgent(cfg, obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim)).to(device)
    compile_fn = (lambda f: compiled(f, Console(stderr=True))) if compiled_update else None
    update = Updater(agent, cfg, -float(act_dim), compile_fn)
    g = torch.Generator(device=device).manual_seed(0)
    batch = (
        torch.randn(256, obs_dim, device=device, generator=g),
        torch.rand(256, act_dim, device=device, generator=g) * 2 - 1,
        -torch.rand(256, device=device, generator=g),
        torch.randn(256, obs_dim, device=device, generator=g),
        torch.zeros(256, device=device),
    )
    t0 = time.perf_counter()
    for _ in range(5):  # warm-up (and compilation)
        update(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            out = update(batch)
        out.cpu()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="ConveyorPick-v0")
    ap.add_argument("--envs", type=int, default=2)
    ap.add_argument("--iters", type=int, default=8, help="PPO iterations to time")
    ap.add_argument("--bare-steps", type=int, default=None, help="default: the PPO run's steps per env")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-sac", action="store_true")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    line("device_cuda", float(dev.type == "cuda"), "bool")
    n_steps = make_config("ppo", args.env, {"n_envs": str(args.envs)}).n_steps
    bare = bare_rate(args.env, args.envs, {}, args.bare_steps or args.iters * n_steps)
    line(f"bare_vector_env_steps_per_s_{args.envs}env", bare, "steps/s")
    r = ppo_rates(args.env, args.envs, args.iters, args.device)
    line("ppo_rollout_steps", r["n_steps"], "steps")
    line("ppo_update_epochs", r["update_epochs"], "epochs")
    line(f"ppo_env_steps_per_s_training_{args.envs}env", r["steps_per_s"], "steps/s")
    line("ppo_update_fraction", r["update_fraction"], "x")
    line("ppo_training_vs_bare_ratio", r["steps_per_s"] / bare, "x")
    if not args.skip_sac:
        eager, _ = sac_updates_per_s(dev, compiled_update=False)
        line("sac_updates_per_s_batch256_eager", eager, "updates/s")
        comp, warm = sac_updates_per_s(dev, compiled_update=True)
        line("sac_updates_per_s_batch256_compiled", comp, "updates/s")
        line("sac_compile_warmup_s", warm, "s")
        line("sac_compiled_vs_eager_ratio", comp / eager, "x")


if __name__ == "__main__":
    main()
