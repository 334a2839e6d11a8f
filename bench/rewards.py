"""Whether each task's reward teaches it: the scripted expert's episode return beside every
degenerate policy's (``envs.degenerate``: do nothing, hover over the first target, grasp and hold
forever, crash fast), on the newest version of each task and, for contrast, on ``-v0``.

    python bench/rewards.py [--seeds 3] [--first-seed 1001] [--workers 2] [--out bench-out/rewards]

A reward teaches when the expert's return is well above every degenerate one: then a learner
that settles for one of them is not at an optimum. Writes ``OUT/rewards.json`` (every episode, the
medians, the commit and machine) and ``OUT/rewards.md``; prints
``rewards.<env>.<policy>.return <median> return`` per cell (medians over the seeds) and
``rewards.<env>.<policy>.margin <expert - policy> return``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics
import sys
from pathlib import Path

from provenance import stamp

POLICIES = ("expert", "do_nothing", "hover", "grasp_and_hold", "crash")


def _one(job: tuple[str, str, int]) -> tuple[str, str, int, float, bool]:
    import envs
    from envs.degenerate import DEGENERATE, episode_return

    env_id, policy, seed = job
    make = envs.make_expert if policy == "expert" else DEGENERATE[policy]
    ret, ok = episode_return(env_id, make, seed)
    return env_id, policy, seed, float(ret), bool(ok)


def main() -> int:
    import envs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1001)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="only these env ids")
    ap.add_argument("--out", default="bench-out/rewards")
    args = ap.parse_args()
    if args.seeds < 1 or args.workers < 1:
        ap.error("--seeds and --workers must be at least 1")
    env_ids = [e for e in envs.ENV_IDS if e != "FactoryReach-v0" and (not args.only or e in args.only)]
    if not env_ids:
        ap.error(f"--only: none of {args.only} is a task with degenerate policies ({', '.join(envs.ENV_IDS)})")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = list(itertools.product(env_ids, POLICIES, seeds))
    rows = []
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for k, row in enumerate(pool.imap_unordered(_one, jobs), 1):
            rows.append(dict(zip(("env_id", "policy", "seed", "return", "success"), row, strict=True)))
            print(f"# {k}/{len(jobs)} {row[0]} {row[1]} seed {row[2]}: return {row[3]:.3f}", file=sys.stderr)
    medians: dict[str, dict[str, float]] = {}
    for env_id in env_ids:
        medians[env_id] = {
            p: statistics.median(r["return"] for r in rows if r["env_id"] == env_id and r["policy"] == p)
            for p in POLICIES
        }
        for p, value in medians[env_id].items():
            print(f"rewards.{env_id}.{p}.return {value:.4g} return", flush=True)
            if p != "expert":
                print(f"rewards.{env_id}.{p}.margin {medians[env_id]['expert'] - value:.4g} return", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows.sort(key=lambda r: (env_ids.index(r["env_id"]), POLICIES.index(r["policy"]), r["seed"]))
    doc = {**stamp(), "seeds": list(seeds), "medians": medians, "episodes": rows}
    (out / "rewards.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        f"Episode return (the task's dense reward), median over seeds {seeds.start}-{seeds.stop - 1}; "
        f"commit `{doc['commit']}`, {doc['machine']}, {doc['date']}.",
        "",
        f"| task | {' | '.join(POLICIES)} | expert wins by at least |",
        f"| --- | {' | '.join('---:' for _ in POLICIES)} | ---: |",
    ]
    for env_id, m in medians.items():
        margin = m["expert"] - max(v for p, v in m.items() if p != "expert")
        md.append(f"| {env_id} | {' | '.join(f'{m[p]:.3f}' for p in POLICIES)} | {margin:.3f} |")
    (out / "rewards.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
