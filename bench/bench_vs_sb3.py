"""Factory Twin's SAC+HER against Stable-Baselines3's on the same goal env, same machine, same run.

For each seed: ``twin train --env ENV --algo sac`` as a user runs it (its per-task defaults, its
final evaluation on the 100 fixed seeds included in the command's wall-clock), then SB3's SAC
with ``HerReplayBuffer`` (SB3's defaults: 2 x 256 networks, one update per env step, future
strategy with 4 sampled goals) for the same number of env steps, evaluated deterministically on
the same 100 seeds. One ``name value unit`` line per figure; medians over seeds.

Usage: python bench/bench_vs_sb3.py [--env panda_gym:PandaReach-v3] [--steps N] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.common.runtime import EVAL_SEED_BASE  # the fixed evaluation seeds


def line(name: str, value: float, unit: str) -> None:
    print(f"{name} {value:.4g} {unit}", flush=True)


def twin_run(env_id: str, steps: int | None, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "agents.cli", "train", "--env", env_id, "--algo", "sac", "--seed", str(seed)]
        cmd += ["--device", "cpu"]
        cmd += ["--out", str(Path(tmp) / "run")] + (["--steps", str(steps)] if steps else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        doc = json.loads((Path(tmp) / "run" / "eval.json").read_text())
    return {
        "command_s": wall,
        "train_s": doc["train_seconds"],
        "steps": doc["step"],
        "success": doc["eval_success_rate"],
    }


def sb3_run(env_id: str, steps: int, seed: int, episodes: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC, HerReplayBuffer

    import envs

    envs.check_env_id(env_id)  # imports the module of a module:EnvId
    torch.manual_seed(seed)
    env = gym.make(env_id)
    model = SAC(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    wins = 0
    for k in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + k)
        while True:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, term, trunc, info = env.step(action)
            if term or trunc:
                wins += bool(info.get("is_success", False))
                break
    env.close()
    return {"train_s": train_s, "success": wins / episodes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="panda_gym:PandaReach-v3")
    ap.add_argument("--steps", type=int, default=None, help="env steps (default: twin train's default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=100, help="SB3 evaluation episodes")
    args = ap.parse_args()
    tag = args.env.replace(":", ".")
    twin, sb3 = [], []
    for seed in args.seeds:
        t = twin_run(args.env, args.steps, seed)
        s = sb3_run(args.env, t["steps"], seed, args.episodes)
        twin.append(t)
        sb3.append(s)
        print(f"# seed {seed}: twin {t}, sb3 {s}", file=sys.stderr, flush=True)
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    line(f"{tag}.env_steps", twin[0]["steps"], "steps")
    line(f"{tag}.seeds", len(args.seeds), "runs")
    line(f"{tag}.twin_train_seconds", med(twin, "train_s"), "s")
    line(f"{tag}.twin_command_seconds", med(twin, "command_s"), "s")
    line(f"{tag}.twin_success", med(twin, "success"), "fraction")
    line(f"{tag}.twin_success_min", min(r["success"] for r in twin), "fraction")
    line(f"{tag}.sb3_train_seconds", med(sb3, "train_s"), "s")
    line(f"{tag}.sb3_success", med(sb3, "success"), "fraction")
    ratios = np.array([t["command_s"] / s["train_s"] for t, s in zip(twin, sb3, strict=True)])
    line(f"{tag}.twin_command_vs_sb3_train", float(np.median(ratios)), "x")
    ratios = np.array([t["train_s"] / s["train_s"] for t, s in zip(twin, sb3, strict=True)])
    line(f"{tag}.twin_train_vs_sb3_train", float(np.median(ratios)), "x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
