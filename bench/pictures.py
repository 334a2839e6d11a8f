"""The README's pictures: each cell, floor and tool mid-episode under its expert, from the overview camera.

Usage: python bench/pictures.py [--out docs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio

import envs

# (env id, env kwargs, file name, seed, control step at which the picture is taken)
SHOTS = (
    ("ConveyorPick-v0", {}, "cell.png", 0, 95),
    ("MachineTend-v0", {}, "machine_tending.png", 0, 300),
    ("BinSort-v0", {}, "bin_sort.png", 1, 352),
    ("PegInsert-v0", {}, "assembly.png", 0, 57),
    ("MachineTend-v0", {"robot": "iiwa"}, "iiwa.png", 0, 220),
    ("AGVDeliver-v0", {}, "agv.png", 0, 230),
    ("WaferTransfer-v0", {}, "fab.png", 0, 88),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="folder for the PNG files")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for env_id, kwargs, name, seed, steps in SHOTS:
        env = gym.make(env_id, render_mode="rgb_array", **kwargs)
        try:
            obs, _ = env.reset(seed=seed)
            expert = envs.make_expert(env_id, env)
            expert.reset()
            for _ in range(steps):
                obs, *_ = env.step(expert(obs))
            iio.imwrite(out / name, env.render())
            print(f"{out / name}: {env_id} {kwargs or ''}, seed {seed}, after {steps} steps")
        finally:
            env.close()


if __name__ == "__main__":
    main()
