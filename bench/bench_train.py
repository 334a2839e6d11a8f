"""Training-speed figures, one ``name value unit`` line each, every ratio against a baseline of the same run.

* The bare pool: env steps/s of the same worker layout the runs use (random actions, the learner
  acting on whichever workers are ready), over as many steps per env as the PPO run takes, so
  both cover the same stretch of their episodes (physics gets dearer as parts arrive).
* PPO: env steps/s while collecting (and over the whole run, updates included), against the bare
  pool; the share of each iteration spent in the update.
* SAC: env steps/s over a run whose updates overlap the workers' physics, against the bare pool;
  the share of the learner's time spent updating; on a CPU, the same run with the learner on
  every core (``learner_threads``) against the cores the workers leave free (the default).
* SAC gradient updates/s (2 x 256 networks, sampling from a filled device replay buffer included)
  at batches 256, 1024 and 4096: eager, ``torch.compile`` and, on CUDA, one CUDA graph per update.
* The Q-filtered cloning term on the demos (``bc_weight``, batch 256, eager, the actor trained on
  every update): updates/s with it, against the same updates without it.
* The critic ensemble (``--ensembles``, batch 256): updates/s with each number of critics, and on
  a CPU against the same critics as separate networks in a Python loop.
* DAgger's image student (``--vision-env``'s ``rgb`` observation, every camera it has, at each of
  ``--image-sizes``, its image defaults: batch 256): updates/s of its fit, on a CPU with one
  thread (the cores a worker per core leaves free, what the fit had before it took them all)
  against every core, which the fit takes while the workers wait.

Usage: python bench/bench_train.py [--env ID] [--workers W] [--envs-per-worker K] [--iters I]
       [--device auto|cpu|cuda] [--skip-ppo] [--skip-sac] [--skip-updates]
       [--ensembles N ...] [--sac-set KEY=VALUE ...] [--skip-vision] [--vision-env ID] [--image-sizes S ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console

from agents import dagger, ppo, sac
from agents.collect.vec import make_vec_env
from agents.common.buffers import ReplayBuffer
from agents.common.config import ConfigError, make_config
from agents.common.nets import mlp
from agents.common.runtime import Run, compiled, resolve_device, share_cores, usable_cores
from agents.common.spaces import flatdim, image_layout
from agents.tools.bench import pool_rate


def line(name: str, value: float, unit: str) -> None:
    print(f"{name} {value:.4g} {unit}", flush=True)


def run_rates(
    algo: str,
    env_id: str,
    n_envs: int,
    workers: int,
    steps_per_env: int,
    device: str,
    sets: dict[str, str] | None = None,
    threads: int = 0,
) -> dict:
    """A short training run: env steps/s while collecting, over the whole run, and the update's
    share. ``sets``: settings over the task's defaults; ``threads``: the learner's CPU threads (0:
    as ``twin train`` sets them)."""
    settings = {"n_envs": str(n_envs), "workers": str(workers), "eval_episodes": "0", "device": device}
    settings.update(sets or {})
    if algo == "sac":
        settings["learning_starts"] = str(2 * n_envs)
    cfg = make_config(algo, env_id, settings)
    cfg.total_steps = steps_per_env * n_envs
    cfg.checkpoint_every = cfg.log_every = 10**12
    vec = make_vec_env(env_id, n_envs, cfg.env_kwargs, workers=workers)
    before = torch.get_num_threads()
    used = share_cores(workers, threads)  # as `twin train` does (threads: its learner_threads)
    try:
        dev = resolve_device(device)
        with tempfile.TemporaryDirectory() as tmp:
            run = Run(tmp, cfg.total_steps, quiet=True)
            t0 = time.perf_counter()
            _, steps = (ppo if algo == "ppo" else sac).train(cfg, vec, run, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            run.close()
    finally:
        vec.close()
        torch.set_num_threads(before)
    c, u = run.timers["collect"], run.timers["update"]
    return {"steps": steps, "collect": steps / c, "wall": steps / wall, "update_fraction": u / (c + u), "threads": used}


def sac_updater(device: torch.device, mode: str, batch: int, num_qs: int = 2, extra: dict | None = None):
    """One SAC update (sampling a filled device buffer included) in ``mode``, warmed up, with
    ``num_qs`` critics in the ensemble and ``extra`` settings."""
    obs_dim, act_dim = 23, 4  # ConveyorPick's sizes
    sets = {"batch_size": str(batch), "device": str(device), "num_qs": str(num_qs), **(extra or {})}
    cfg = make_config("sac", "ConveyorPick-v0", sets)
    agent = sac.SACAgent(cfg, obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim)).to(device)
    buffer = ReplayBuffer(200_000, 16, obs_dim, act_dim, device, gamma=cfg.gamma, n_step=cfg.n_step_return)
    g = torch.Generator(device=device).manual_seed(0)
    m = 200_000 // 16
    for name in ("obs", "next_obs", "actions", "rewards"):
        t = getattr(buffer, name)
        t.copy_(torch.randn(t.shape, device=device, generator=g))
    buffer.t.fill_(m)
    buffer.t_host[:] = m
    compile_fn = (lambda f: compiled(f, Console(stderr=True))) if mode == "compiled" else None
    update = sac.Updater(
        agent, cfg, -float(act_dim), lambda: buffer.sample(batch), device, graph=mode == "graph", compile_fn=compile_fn
    )
    for _ in range(5):  # warm-up (compilation, graph capture)
        update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return update


def updates_per_s(updates: list, n: int = 200, reps: int = 3) -> list[float]:
    """Each of ``updates``' updates/s: the median of ``reps`` blocks of ``n``, the updates' blocks
    taken in turn so that a change in the machine's load falls on all of them alike."""
    rates = [[] for _ in updates]
    for _ in range(reps):
        for update, got in zip(updates, rates, strict=True):
            t0 = time.perf_counter()
            for _ in range(n):
                update()
            update.losses.cpu()  # waits for the last update
            got.append(n / (time.perf_counter() - t0))
    return [statistics.median(r) for r in rates]


def sac_updates_per_s(device: torch.device, mode: str, batch: int, n: int = 200, num_qs: int = 2) -> float:
    """Updates/s of one SAC update (sampling a filled device buffer included) in ``mode``, with
    ``num_qs`` critics in the ensemble."""
    return updates_per_s([sac_updater(device, mode, batch, num_qs)], n)[0]


def looped_critics_updates_per_s(num_qs: int, batch: int, n: int = 100) -> float:
    """The baseline the batched ensemble replaces: ``num_qs`` separate critics, each its own
    forward and backward in a Python loop, with the same actor, temperature and target steps
    (CPU, eager; what an ensemble costs without stacking)."""
    obs_dim, act_dim = 23, 4
    cfg = make_config("sac", "ConveyorPick-v0", {"batch_size": str(batch), "num_qs": str(num_qs)})
    w, d, ln = cfg.net_width, cfg.net_depth, cfg.critic_layernorm  # the networks sac_updates_per_s times
    x, nx = torch.randn(batch, obs_dim), torch.randn(batch, obs_dim)
    act, rew, term = torch.rand(batch, act_dim) * 2 - 1, torch.randn(batch), torch.zeros(batch)
    critics = [mlp(obs_dim + act_dim, 1, w, d, layer_norm=ln) for _ in range(num_qs)]
    targets = [mlp(obs_dim + act_dim, 1, w, d, layer_norm=ln) for _ in range(num_qs)]
    actor = mlp(obs_dim, 2 * act_dim, w, d)
    opt = torch.optim.Adam([p for c in critics for p in c.parameters()] + [*actor.parameters()], fused=True)
    pairs = ([p for t in targets for p in t.parameters()], [p for c in critics for p in c.parameters()])

    def sample(obs):
        mean, log_std = actor(obs).split(act_dim, -1)
        u = mean + log_std.clamp(-5, 2).exp() * torch.randn_like(mean)
        return torch.tanh(u), -(u - mean).square().sum(-1)

    def update():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            na, nlogp = sample(nx)
            nxa = torch.cat([nx, na], -1)
            q_next = torch.stack([t(nxa).squeeze(-1) for t in targets[:2]]).min(0).values
            target = rew + 0.97 * (1 - term) * (q_next - 0.1 * nlogp)
        xa = torch.cat([x, act], -1)
        loss = sum((c(xa).squeeze(-1) - target).square().mean() for c in critics)
        a, logp = sample(x)
        xa_pi = torch.cat([x, a], -1)
        q_pi = torch.stack([c(xa_pi).squeeze(-1) for c in critics]).mean(0)
        (loss + (0.1 * logp - q_pi).mean()).backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(pairs[0], pairs[1], 0.005)

    for _ in range(5):
        update()
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            update()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def dagger_image_updates_per_s(
    env_id: str, size: int, threads: list[int], device: torch.device, n: int = 20, reps: int = 3
) -> list[float]:
    """Updates/s of DAgger's fit on ``env_id``'s images at ``size`` (every camera of its ``rgb``
    observation), with each of ``threads`` CPU threads: the median of ``reps`` blocks of ``n``
    updates, the thread counts taken in turn. The aggregate holds 5,000 labelled states of random
    pixels; an update's cost does not depend on what they show."""
    kwargs = {"obs_mode": "rgb", "image_size": size}
    cfg = make_config("dagger", env_id, {"env_kwargs": json.dumps(kwargs)})
    env = gym.make(env_id, **kwargs)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    obs_dim, act_dim = flatdim(obs_space), act_space.shape[0]
    layout = image_layout(obs_space)
    agent = dagger.build(cfg, obs_dim, act_dim, act_space.low, act_space.high, layout).to(device)
    data = dagger.Aggregate(5_000, obs_dim, act_dim, device, layout)
    gen = torch.Generator().manual_seed(0)
    data.add(
        torch.randint(0, 256, (5_000, obs_dim), generator=gen).float().to(device),
        (torch.rand(5_000, act_dim, generator=gen) * 2 - 1).to(device),
    )
    opt = torch.optim.AdamW(agent.actor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    before = torch.get_num_threads()
    rates: list[list[float]] = [[] for _ in threads]
    try:
        for rep in range(reps + 1):  # the first block warms up
            for k, got in zip(threads, rates, strict=True):
                torch.set_num_threads(k)
                t0 = time.perf_counter()
                for _ in range(n):
                    loss = dagger.update(agent, opt, data, cfg.batch_size)
                float(loss)  # waits for the last update
                if rep:
                    got.append(n / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(before)
    return [statistics.median(r) for r in rates]


def _setting(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not key or not eq:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. updates_per_step=2")
    return key, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="ConveyorPick-v0")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--envs-per-worker", type=int, default=4)
    ap.add_argument("--iters", type=int, default=4, help="PPO iterations (of n_steps per env) to time")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-ppo", action="store_true")
    ap.add_argument("--skip-sac", action="store_true")
    ap.add_argument("--skip-updates", action="store_true")
    ap.add_argument(
        "--sac-set",
        nargs="*",
        default=[],
        type=_setting,
        metavar="KEY=VALUE",
        help="settings of the SAC run over the task's defaults",
    )
    ap.add_argument("--skip-vision", action="store_true", help="leave out DAgger's image fit")
    ap.add_argument("--vision-env", default="BinSort-v1", help="the task whose cameras DAgger's image fit is timed on")
    ap.add_argument("--image-sizes", type=int, nargs="*", default=[84, 64], help="image sides to time it at")
    ap.add_argument("--ensembles", type=int, nargs="*", default=[2, 10], help="critic ensemble sizes to time")
    ap.add_argument("--batches", type=int, nargs="*", default=[256, 1024, 4096], help="batch sizes to time updates at")
    ap.add_argument(
        "--modes", nargs="*", default=["eager", "compiled", "graph"], help="update modes (graph: on CUDA only)"
    )
    args = ap.parse_args()
    sets = dict(args.sac_set)
    try:  # a setting SAC does not have, or a value out of its range, is refused before anything runs
        make_config("sac", args.env, sets)
    except ConfigError as exc:
        ap.error(f"--sac-set: {exc}")
    for size in [] if args.skip_vision else args.image_sizes:  # a camera-less task or a size out of range
        try:
            gym.make(args.vision_env, obs_mode="rgb", image_size=size).close()
        except (ValueError, TypeError, gym.error.Error) as exc:
            ap.error(f"--vision-env {args.vision_env} --image-sizes {size}: {exc}")
    dev = resolve_device(args.device)
    n = args.workers * args.envs_per_worker
    line("device_cuda", float(dev.type == "cuda"), "bool")
    if not (args.skip_ppo and args.skip_sac):  # the runs' baseline
        line("workers", args.workers, "processes")
        line("envs", n, "envs")
        n_steps = make_config("ppo", args.env, {"n_envs": str(n)}).n_steps
        per_env = args.iters * n_steps
        line("steps_per_env", per_env, "steps")
        bare = pool_rate(args.env, args.workers, args.envs_per_worker, per_env, "async")
        line(f"bare_pool_steps_per_s_{n}env", bare, "steps/s")
    if not args.skip_ppo:
        r = run_rates("ppo", args.env, n, args.workers, per_env, args.device)
        line("ppo_env_steps_per_s_collecting", r["collect"], "steps/s")
        line("ppo_collecting_vs_bare", r["collect"] / bare, "x")
        line("ppo_env_steps_per_s_whole_run", r["wall"], "steps/s")
        line("ppo_update_fraction", r["update_fraction"], "x")
    if not args.skip_sac:
        r = run_rates("sac", args.env, n, args.workers, per_env, args.device, sets)
        line("sac_learner_threads", r["threads"], "threads")
        line("sac_env_steps_per_s_whole_run", r["wall"], "steps/s")
        line("sac_whole_run_vs_bare", r["wall"] / bare, "x")
        line("sac_update_fraction", r["update_fraction"], "x")
        cores = usable_cores()
        if dev.type == "cpu" and cores != r["threads"]:  # the learner on every core (learner_threads)
            every = run_rates("sac", args.env, n, args.workers, per_env, args.device, sets, threads=cores)
            line("sac_learner_threads_every_core", cores, "threads")
            line("sac_env_steps_per_s_whole_run_every_core", every["wall"], "steps/s")
            line("sac_every_core_vs_shared", every["wall"] / r["wall"], "x")
    if not args.skip_updates:
        modes = [m for m in args.modes if m != "graph" or dev.type == "cuda"]
        for batch in args.batches:
            for mode in modes:
                line(f"sac_updates_per_s_batch{batch}_{mode}", sac_updates_per_s(dev, mode, batch), "updates/s")
        # the Q-filtered cloning term on the demos (bc_weight): its cost on an update that trains the
        # actor (batch 256; the batch's last demo_ratio rows stand for the demos, only their count matters)
        demos = {"demos": "demos.safetensors", "actor_every": "1"}
        plain, cloning = updates_per_s(
            [
                sac_updater(dev, "eager", 256, extra=demos),
                sac_updater(dev, "eager", 256, extra={**demos, "bc_weight": "1", "bc_q_filter": "true"}),
            ],
            reps=7,
        )
        line("sac_updates_per_s_batch256_eager_cloning", cloning, "updates/s")
        line("sac_cloning_vs_plain", cloning / plain, "x")
        # the critic ensemble (batch 256): stacked into one network, against the same critics looped
        for q in args.ensembles:
            for mode in [m for m in modes if m != "compiled"]:
                rate = sac_updates_per_s(dev, mode, 256, num_qs=q)
                line(f"sac_updates_per_s_batch256_{mode}_{q}critics", rate, "updates/s")
                if mode == "eager" and dev.type == "cpu":
                    looped = looped_critics_updates_per_s(q, 256)
                    line(f"sac_updates_per_s_batch256_looped_{q}critics", looped, "updates/s")
                    line(f"sac_ensemble_vs_looped_{q}critics", rate / looped, "x")

    if not args.skip_vision:
        cores = usable_cores()
        threads = [1, cores] if dev.type == "cpu" and cores > 1 else [torch.get_num_threads()]
        for size in args.image_sizes:
            rates = dagger_image_updates_per_s(args.vision_env, size, threads, dev)
            name = f"dagger_image_updates_per_s_{size}px"
            if len(threads) == 1:
                line(name, rates[0], "updates/s")
                continue
            line(f"{name}_1thread", rates[0], "updates/s")
            line(f"{name}_{cores}threads", rates[1], "updates/s")
            line(f"dagger_image_fit_every_core_vs_one_{size}px", rates[1] / rates[0], "x")


if __name__ == "__main__":
    main()
