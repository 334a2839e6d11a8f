"""Fleet speed: AGVDeliver's env steps/s with 1, 2, 4 and 8 AGVs on the floor, one ``name value
unit`` line per figure.

The task's AGV is driven by its scripted expert (only ``env.step`` is timed, not the expert), so
each repeat covers whole delivery episodes: docking, transfers, the people crossing; the other
AGVs shuttle under their own controller, each scanning every step. The scanner figures compare
one batched ray cast for all eight scanners with eight separate casts of the same rays.

Usage: python bench/bench_fleet.py [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

import envs

ENV = "AGVDeliver-v0"


def fleet_rate(n: int, steps: int, repeats: int) -> float:
    env = gym.make(ENV, fleet=n)
    try:
        rates = []
        for r in range(repeats):
            expert = envs.make_expert(ENV, env)
            obs, _ = env.reset(seed=r)
            expert.reset()
            spent, done, k = 0.0, False, 0
            while k < steps or not done:
                if done:
                    obs, _ = env.reset()
                    expert.reset()
                a = expert(obs)
                t0 = time.perf_counter()
                obs, _, term, trunc, _ = env.step(a)
                spent += time.perf_counter() - t0
                done = term or trunc
                k += 1
            rates.append(k / spent)
        return statistics.median(rates)
    finally:
        env.close()


def scan_times(repeats: int) -> tuple[float, float]:
    """Milliseconds for reading 8 scanners batched, and one by one."""
    env = gym.make(ENV, fleet=8)
    try:
        env.reset(seed=0)
        fleet = env.unwrapped.twin.fleet
        poses = [a.pose for a in fleet.agvs]
        scanners = fleet.scanners
        singles = []
        for i in range(len(poses)):
            s = type(scanners)(fleet.world, [scanners.configs[i]], [(0.45, 0.3)])
            singles.append(s)
        batched, separate = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(100):
                scanners.read(poses)
            batched.append((time.perf_counter() - t0) * 10)
            t0 = time.perf_counter()
            for _ in range(100):
                for s, pose in zip(singles, poses, strict=True):
                    s.read([pose])
            separate.append((time.perf_counter() - t0) * 10)
        return statistics.median(batched), statistics.median(separate)
    finally:
        env.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500, help="env steps per repeat at least (whole episodes)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rates = {}
    for n in (1, 2, 4, 8):
        rates[n] = fleet_rate(n, args.steps, args.repeats)
        print(f"fleet_{n}_env_steps_per_s {rates[n]:.1f} steps/s", flush=True)
    per_agv = (1000 / rates[8] - 1000 / rates[1]) / 7
    print(f"fleet_step_cost_per_added_agv {per_agv:.3f} ms")
    print(f"fleet_1_step_cost {1000 / rates[1]:.3f} ms")
    print(f"fleet_8_vs_1_ratio {rates[8] / rates[1]:.3f} x")
    batched, separate = scan_times(args.repeats)
    print(f"scan_8_batched {batched:.3f} ms")
    print(f"scan_8_separate {separate:.3f} ms")
    print(f"scan_batching_speedup {separate / batched:.2f} x")


if __name__ == "__main__":
    main()
