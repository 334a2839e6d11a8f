"""How much random exploration a policy bears: its success on a task when every action gets
``scale`` half-ranges of tanh-squashed unit Gaussian noise on the chosen action dimensions. That is
what a residual SAC run's first corrections add to its frozen base (``residual_scale`` times a
uniform draw in [-1, 1] through ``learning_starts``, then times the actor's squashed sample), so
a base that fails under its run's ``residual_scale`` gives that run next to no successes to
learn from.

    python bench/exploration_noise.py --env PegInsert-v1 --policy RUN|expert [--scales 0 0.05 0.2]
        [--dims 0 1 2] [--episodes 40] [--first-seed 50000] [--randomize] [--out DIR]

Prints ``noise.<env>.<policy>.<variant>.<dims>.scale_<s>.success <share> fraction`` per scale, and
``.ended_early`` (the share of episodes that ended before the time limit without success); writes
``OUT/noise.json`` (every scale's counts, the commit and machine). The same seeds and the same
noise draws serve every scale and policy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from provenance import stamp


def episodes(env: gym.Env, act, scale: float, dims: list[int], seeds: range) -> tuple[int, int]:
    """Successes and early ends without success of ``act`` (raw observation -> action) over ``seeds``."""
    half = (env.action_space.high - env.action_space.low) / 2
    rng = np.random.default_rng(0)
    noised = np.isin(np.arange(env.action_space.shape[0]), dims)
    wins = early = 0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        reset = getattr(act, "reset", None)
        if reset is not None:
            reset()
        done = False
        while not done:
            a = np.asarray(act(obs), dtype=np.float32)
            noise = np.tanh(rng.standard_normal(a.shape)).astype(np.float32)
            a = a + scale * half * np.where(noised, noise, np.float32(0.0))
            obs, _, term, trunc, info = env.step(
                np.clip(a, env.action_space.low, env.action_space.high).astype(np.float32)
            )
            done = term or trunc
        ok = bool(info.get("is_success"))
        wins += ok
        early += bool(term and not ok)
    return wins, early


def policy_fn(policy: str, env_id: str, env: gym.Env):
    """The scripted expert, or a checkpoint's or ONNX file's policy on flattened observations,
    loaded and checked against ``env`` as ``twin eval`` does (``agents.evaluation.runner``)."""
    import envs
    from agents.evaluation.runner import load_network, policy_spec

    spec = policy_spec(policy)
    if spec.kind == "expert":
        return envs.make_expert(env_id, env)
    net = load_network(spec)
    if net is None:
        raise ValueError(f"--policy {policy}: 'expert', a checkpoint folder or an ONNX file")
    if (made := getattr(net, "doc", {}).get("env_id", env_id)) != env_id:
        raise ValueError(f"--policy {policy}: made for {made}, not {env_id}")
    net.check(env)
    return lambda obs: net(gym.spaces.flatten(env.observation_space, obs))[0]


def main() -> int:
    import envs  # noqa: F401 (registers the tasks)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", required=True)
    ap.add_argument("--policy", required=True, help="expert, a run or checkpoint folder of --env, or an ONNX file")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.05, 0.2])
    ap.add_argument("--dims", type=int, nargs="+", help="the action dimensions noised (default: all)")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=50_000)
    ap.add_argument("--randomize", action="store_true", help="the layout's randomisation (the suite's randomized)")
    ap.add_argument("--out", default="bench-out/exploration-noise")
    args = ap.parse_args()
    if args.env not in gym.registry:
        ap.error(f"--env {args.env}: no such env id")
    if args.episodes < 1:
        ap.error(f"--episodes {args.episodes}: at least 1")
    if bad := [s for s in args.scales if not 0.0 <= s <= 2.0]:
        ap.error(f"--scales {bad}: each in [0, 2] half-ranges of the action")
    env = gym.make(args.env, **({"randomize": True} if args.randomize else {}))
    n_act = env.action_space.shape[0]
    dims = list(range(n_act)) if args.dims is None else args.dims
    if bad := [d for d in dims if not 0 <= d < n_act]:
        ap.error(f"--dims {bad}: {args.env}'s action has dimensions 0 to {n_act - 1}")
    if args.policy != "expert" and not Path(args.policy).exists():
        ap.error(f"--policy {args.policy}: no such run or checkpoint folder (or 'expert')")
    try:
        act = policy_fn(args.policy, args.env, env)
    except ValueError as exc:  # not a policy, or one made for another env or observation
        print(f"exploration_noise: {exc}", file=sys.stderr)
        return 2
    name = "expert" if args.policy == "expert" else Path(args.policy).name
    variant = "randomized" if args.randomize else "nominal"
    tag = f"noise.{args.env}.{name}.{variant}.dims_{'-'.join(map(str, dims))}"
    seeds = range(args.first_seed, args.first_seed + args.episodes)
    rows = []
    for scale in args.scales:
        wins, early = episodes(env, act, scale, dims, seeds)
        rows.append({"scale": scale, "episodes": args.episodes, "successes": wins, "ended_early": early})
        print(f"{tag}.scale_{scale:g}.success {wins / args.episodes:.3g} fraction", flush=True)
        print(f"{tag}.scale_{scale:g}.ended_early {early / args.episodes:.3g} fraction", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {**stamp(), "env": args.env, "policy": args.policy, "variant": variant, "dims": dims, "rows": rows}
    (out / "noise.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
