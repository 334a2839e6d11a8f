"""Training configurations: one dataclass per algorithm, every hyper-parameter a documented field.

``make_config(algo, env_id, overrides)`` starts from the dataclass defaults, applies the per-task
defaults in ``TASK_DEFAULTS`` and then the user's ``key=value`` overrides (``twin train --set``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A bad ``--set`` key or value."""


@dataclass
class TrainConfig:
    """Settings every algorithm shares."""

    env_id: str = "FactoryReach-v0"
    """Gymnasium id of the env to train on (any registered id, not only this package's)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gym.make`` (e.g. ``{"obs_mode": "goal"}``)."""
    total_steps: int = 100_000
    """Env steps to train for, summed over all envs (BC: gradient steps)."""
    n_envs: int = 1
    """Parallel envs, spread over the worker processes."""
    workers: int = 0
    """Env worker processes (Ray actors with ``backend=ray``); 0: one per CPU core, at most one per env."""
    double_buffer: bool = True
    """Each worker steps half its envs while the learner acts on the other half."""
    pin_workers: bool = True
    """Bind each local env worker to a core of those this process may use (give concurrent runs
    their own cores with ``taskset -c``, or turn this off)."""
    collect: str = "async"
    """``async``: act on the envs of whichever workers have finished, so none waits for the
    slowest; ``sync``: step every env in lock-step (bit-reproducible runs, slower)."""
    backend: str = "local"
    """``local`` worker processes, or ``ray`` actors (the cluster at ``RAY_ADDRESS``, else a local one)."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    net_width: int = 256
    """Units per hidden layer of every network."""
    net_depth: int = 2
    """Hidden layers of every network."""
    compile: bool = False
    """Compile the update step with ``torch.compile`` (falls back to eager where unsupported)."""
    eval_episodes: int = 100
    """Episodes of the final evaluation, on the fixed evaluation seeds."""
    eval_every: int = 0
    """Env steps between evaluations of the deterministic policy while training PPO or SAC (0: none). They
    run ``progress_episodes`` episodes on held-out seeds (not the final evaluation's) and log
    ``progress_success_rate``: the curve of what the policy can do, where the training success
    rate shows the exploring policy's episodes."""
    progress_episodes: int = 20
    """Episodes of each evaluation during training."""
    max_seconds: float = 0.0
    """A wall-clock budget for PPO and SAC (0: none): training ends at the first step past it, as if
    the step budget had been reached (the last evaluation during training, a checkpoint, then the
    final evaluation, which the budget does not include). It counts the whole run, evaluations
    during training and earlier lives of a resumed run included."""
    keep_best: bool = True
    """With ``eval_every``: keep the policy that scored best in the evaluations during training
    (success rate, then mean return; the final weights are evaluated too) as ``checkpoints/best``.
    The final evaluation, ``twin eval RUN`` and ``twin export RUN`` then use it; ``latest`` stays
    the checkpoint a run resumes from. False: the run stands for its final weights."""
    checkpoint_every: int = 50_000
    """Steps between checkpoints (one is always written at the end)."""
    difficulty_curriculum: bool = False
    """PPO and SAC: train through the task's easier knob settings first (``Task.curriculum_stages``;
    ConveyorPick: one part on a belt at half speed, one part, two parts), all envs moving on together
    once the last ``difficulty_window`` episodes at a stage succeeded at ``difficulty_threshold``;
    the evaluations always play the task as made (``agents.collect.difficulty``). Local workers."""
    difficulty_window: int = 16
    """Episodes at a stage (on any env) over which its success rate is judged."""
    difficulty_threshold: float = 0.5
    """Success rate at a stage over ``difficulty_window`` episodes at which the run moves on."""
    log_every: int = 2_000
    """Steps between metric lines."""


@dataclass
class PPOConfig(TrainConfig):
    """Proximal Policy Optimisation for continuous actions (clipped objective, GAE)."""

    lr: float = 3e-4
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over training."""
    n_steps: int = 128
    """Rollout length per env between updates."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    n_minibatches: int = 4
    update_epochs: int = 10
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    init_log_std: float = -0.5
    """Initial log standard deviation of the Gaussian policy."""
    norm_obs: bool = True
    """Normalise observations with running statistics (updated once per rollout, saved with the
    model, frozen at evaluation)."""
    reward_scale: float = 1.0
    cuda_graph: bool = True
    """On CUDA, replay the acting step and the whole update (GAE and every minibatch step) as
    captured CUDA graphs."""


@dataclass
class SACConfig(TrainConfig):
    """Soft Actor-Critic, with hindsight goal relabelling (HER) on goal-dict envs."""

    lr: float = 1e-3
    buffer_size: int = 1_000_000
    batch_size: int = 256
    gamma: float = 0.95
    tau: float = 0.05
    """Polyak factor of the target critics."""
    learning_starts: int = 1_000
    """Env steps of uniform random actions before learning."""
    updates_per_step: float = 0.5
    """Gradient updates per env step (per sub-env step)."""
    her_ratio: float = 0.8
    """Fraction of sampled transitions whose goal is relabelled with a future achieved goal (goal envs)."""
    init_alpha: float = 0.1
    autotune_alpha: bool = True
    norm_obs: bool = True
    overlap_updates: bool = True
    """Run the updates while the workers step the envs; the actions for that step then come from
    the weights before those updates (one update round old). False: update, then act."""
    cuda_graph: bool = True
    """On CUDA, run each whole update (sampling, goal relabelling, critic, actor, temperature and
    target steps) and the acting step as captured CUDA graphs."""
    demos: str = ""
    """Demonstrations file (``twin demos``) for RL from demonstrations (RLPD): every batch takes
    ``demo_ratio`` of its transitions from the demos, the rest from the replay buffer."""
    demo_ratio: float = 0.5
    critic_layernorm: bool = False
    """LayerNorm in the critics' hidden layers (on by default with ``demos``, as in RLPD)."""
    curriculum: bool = False
    """Reverse curriculum over the demos (RFCL): episodes start part-way along a demonstration,
    near its end, and the start moves back as the agent succeeds from it
    (``agents.collect.curriculum``). Needs ``demos``; the demos' seeds and executed actions are
    replayed to reach the starts."""
    curriculum_step_back: float = 0.1
    """How far a mastered start moves back, as a fraction of the demonstrations."""
    curriculum_window: int = 8
    """Episodes from the current start (on any env) over which its success rate is judged."""
    curriculum_threshold: float = 0.75
    """Success rate over ``curriculum_window`` episodes at which a start counts as mastered."""
    curriculum_real_starts: float = 0.2
    """Fraction of episodes from the task's real initial states while the curriculum runs."""
    curriculum_horizon_ratio: float = 3.0
    """Curriculum episodes end after this many times the steps the demonstration took from the
    start to its end (at least 50), besides the env's own time limit."""


@dataclass
class BCConfig(TrainConfig):
    """Behaviour cloning: regress the expert's actions from its observations."""

    demos: str = ""
    """Demonstrations file written by ``twin demos``."""
    total_steps: int = 20_000
    lr: float = 1e-3
    batch_size: int = 512
    weight_decay: float = 1e-5
    val_fraction: float = 0.05
    """Share of demo episodes held out to report a validation loss."""
    norm_obs: bool = True
    log_every: int = 500
    checkpoint_every: int = 5_000


CONFIGS: dict[str, type[TrainConfig]] = {"ppo": PPOConfig, "sac": SACConfig, "bc": BCConfig}

# Goal-reaching with SAC + HER, tuned for wall-clock on a 2-core CPU: small networks, two envs in
# one worker, lock-step; such tasks are solved within a few thousand steps.
_SAC_REACH = {
    "learning_starts": 1_000,
    "net_width": 128,
    "n_envs": 2,
    "workers": 1,
    "collect": "sync",
    "log_every": 500,
}

TASK_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("FactoryReach-v0", "sac"): {
        **_SAC_REACH,
        "env_kwargs": {"obs_mode": "goal", "reward_type": "sparse"},
        "total_steps": 4_500,
        "checkpoint_every": 4_500,
    },
    ("panda_gym:PandaReach-v3", "sac"): {**_SAC_REACH, "total_steps": 5_000, "checkpoint_every": 5_000},
    ("FactoryReach-v0", "ppo"): {"total_steps": 200_000, "n_envs": 2, "n_steps": 256, "ent_coef": 0.0},
    ("FactoryReach-v0", "bc"): {"total_steps": 5_000},
    # From scratch, as manipulation suites set these (not MuJoCo's): a short horizon (a pick takes
    # about 100 control steps and every stage pays as it is reached), rollouts of half an episode
    # (640 steps) from many envs, more epochs over smaller minibatches.
    ("ConveyorPick-v0", "ppo"): {
        "total_steps": 2_000_000,
        "n_envs": 16,
        "n_steps": 320,
        "gamma": 0.95,
        "gae_lambda": 0.9,
        "update_epochs": 8,
        "n_minibatches": 8,
    },
    # SAC from scratch: RLPD's settings without the demos (8 envs, LayerNorm critics, UTD 0.5).
    ("ConveyorPick-v0", "sac"): {
        "total_steps": 300_000,
        "n_envs": 8,
        "gamma": 0.97,
        "her_ratio": 0.0,
        "critic_layernorm": True,
    },
    # RL from demonstrations (--demos): RLPD's wall-time settings (8 envs, UTD 0.5, LayerNorm
    # critics); a longer horizon, since a pick takes about 100 control steps.
    ("ConveyorPick-v0", "sac+demos"): {"total_steps": 300_000, "n_envs": 8, "gamma": 0.97, "log_every": 2_000},
    ("ConveyorPick-v0", "bc"): {"total_steps": 30_000, "net_width": 512, "net_depth": 3},
}


def _coerce(name: str, f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            return int(float(raw)) if float(raw).is_integer() else int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("dict"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return raw
    except ValueError:
        raise ConfigError(f"{name}: expected {kind}, got {raw!r}") from None


def make_config(algo: str, env_id: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Dataclass defaults, then per-task defaults, then ``overrides`` (strings are parsed by field type)."""
    if algo not in CONFIGS:
        raise ConfigError(f"unknown algorithm {algo!r}: expected one of {sorted(CONFIGS)}")
    cls = CONFIGS[algo]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {"env_id": env_id, **TASK_DEFAULTS.get((env_id, algo), {})}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{algo} has no setting {key!r}{hint} (settings: {', '.join(sorted(fields))})")
        values[key] = _coerce(key, fields[key], raw) if isinstance(raw, str) else raw
    if algo == "sac" and values.get("demos"):  # RL from demonstrations: RLPD's settings
        demo_defaults = {"critic_layernorm": True, **TASK_DEFAULTS.get((env_id, "sac+demos"), {})}
        for key, value in demo_defaults.items():
            if key not in (overrides or {}):
                values[key] = value
    cfg = cls(**values)
    validate(cfg)
    return cfg


# Bounds of every numeric setting: (low, high), both inclusive; open ends marked by ``>`` / ``<``
# in OPEN. A value outside is refused before anything is allocated or started.
BOUNDS: dict[str, tuple[float, float]] = {
    "total_steps": (1, 10**12),
    "n_envs": (1, 4096),
    "workers": (0, 1024),
    "seed": (0, 2**63 - 1),
    "net_width": (1, 8192),
    "net_depth": (1, 32),
    "eval_episodes": (0, 100_000),
    "eval_every": (0, 10**12),
    "max_seconds": (0.0, 1e9),
    "progress_episodes": (1, 100_000),
    "checkpoint_every": (1, 10**12),
    "log_every": (1, 10**12),
    "lr": (0.0, 1.0),
    "n_steps": (1, 100_000),
    "gamma": (0.0, 1.0),
    "gae_lambda": (0.0, 1.0),
    "n_minibatches": (1, 100_000),
    "update_epochs": (1, 1000),
    "clip_coef": (0.0, 10.0),
    "ent_coef": (0.0, 10.0),
    "vf_coef": (0.0, 100.0),
    "max_grad_norm": (0.0, 1e6),
    "init_log_std": (-20.0, 2.0),
    "reward_scale": (0.0, 1e6),
    "buffer_size": (1, 10**9),
    "batch_size": (1, 1_000_000),
    "tau": (0.0, 1.0),
    "learning_starts": (0, 10**12),
    "updates_per_step": (0.0, 1000.0),
    "her_ratio": (0.0, 1.0),
    "init_alpha": (0.0, 1e3),
    "demo_ratio": (0.0, 1.0),
    "weight_decay": (0.0, 1.0),
    "val_fraction": (0.0, 0.5),
    "difficulty_window": (1, 1000),
    "difficulty_threshold": (0.0, 1.0),
    "curriculum_step_back": (0.0, 1.0),
    "curriculum_window": (1, 1000),
    "curriculum_threshold": (0.0, 1.0),
    "curriculum_real_starts": (0.0, 1.0),
    "curriculum_horizon_ratio": (0.0, 1000.0),
}
OPEN = {
    "lr": ">",
    "gamma": ">",
    "clip_coef": ">",
    "max_grad_norm": ">",
    "reward_scale": ">",
    "tau": ">",
    "updates_per_step": ">",
    "init_alpha": ">",
    "her_ratio": "<",
    "demo_ratio": "<>",
    "val_fraction": "<",
    "curriculum_step_back": ">",
    "curriculum_threshold": ">",
    "difficulty_threshold": ">",
    "curriculum_horizon_ratio": ">",
}
"""Bounds that exclude their end: ``>`` the low end, ``<`` the high end."""


def _bound_text(name: str) -> str:
    lo, hi = BOUNDS[name]
    open_ = OPEN.get(name, "")
    show = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:g}"  # noqa: E731
    return f"{'(' if '>' in open_ else '['}{show(lo)}, {show(hi)}{')' if '<' in open_ else ']'}"


def validate(cfg: TrainConfig) -> None:
    """Every setting of the right type, finite and within its bounds; the problems in one error."""
    problems = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if kind in ("int", "float"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and kind == "int" and not isinstance(value, int):
                ok = False
            if not ok:
                problems.append(f"{f.name} must be a{'n' * (kind == 'int')} {kind}, got {value!r}")
                continue
            if not math.isfinite(value):
                problems.append(f"{f.name} must be a finite number, got {value!r}")
                continue
            if f.name in BOUNDS:
                lo, hi = BOUNDS[f.name]
                open_ = OPEN.get(f.name, "")
                below = value <= lo if ">" in open_ else value < lo
                above = value >= hi if "<" in open_ else value > hi
                if below or above:
                    problems.append(f"{f.name} must be in {_bound_text(f.name)}, got {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            problems.append(f"{f.name} must be true or false, got {value!r}")
        elif kind == "str" and not isinstance(value, str):
            problems.append(f"{f.name} must be a string, got {value!r}")
        elif kind.startswith("dict") and not isinstance(value, dict):
            problems.append(f"{f.name} must be a JSON object, got {value!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    if cfg.collect not in ("async", "sync"):
        problems.append(f"collect must be async or sync, got {cfg.collect!r}")
    if cfg.backend not in ("local", "ray"):
        problems.append(f"backend must be local or ray, got {cfg.backend!r}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        problems.append(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    if not isinstance(cfg.env_id, str) or not cfg.env_id:
        problems.append(f"env_id must be a non-empty string, got {cfg.env_id!r}")
    if isinstance(cfg, PPOConfig):
        batch = cfg.n_steps * cfg.n_envs
        if batch % cfg.n_minibatches:
            problems.append(f"n_minibatches ({cfg.n_minibatches}) must divide n_steps * n_envs ({batch})")
    if isinstance(cfg, SACConfig) and cfg.curriculum and not cfg.demos:
        problems.append("curriculum needs demos (--demos FILE): its starts are states along the demonstrations")
    if isinstance(cfg, SACConfig) and cfg.curriculum and cfg.backend == "ray":
        problems.append("curriculum runs on local workers (they share its start in shared memory), not backend=ray")
    if cfg.difficulty_curriculum and isinstance(cfg, BCConfig):
        problems.append("difficulty_curriculum is for PPO and SAC (BC learns from recorded demos)")
    if cfg.difficulty_curriculum and cfg.backend == "ray":
        problems.append(
            "difficulty_curriculum runs on local workers (they share its stage in shared memory), not backend=ray"
        )
    if cfg.difficulty_curriculum and isinstance(cfg, SACConfig) and cfg.curriculum:
        problems.append(
            "difficulty_curriculum and curriculum do not mix: the reverse curriculum replays demos that were "
            "recorded with the run's own env kwargs"
        )
    if isinstance(cfg, SACConfig) and cfg.batch_size > cfg.buffer_size:
        problems.append(f"batch_size ({cfg.batch_size}) must not exceed buffer_size ({cfg.buffer_size})")
    if problems:
        raise ConfigError("; ".join(problems))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return {"algo": algo_of(cfg), **dataclasses.asdict(cfg)}


def algo_of(cfg: TrainConfig) -> str:
    return next(name for name, cls in CONFIGS.items() if type(cfg) is cls)


def from_dict(d: dict[str, Any]) -> TrainConfig:
    d = dict(d)
    algo = d.pop("algo", None)
    if algo not in CONFIGS:
        raise ConfigError(f"unknown algorithm {algo!r} in a saved config")
    cls = CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"saved config has unknown settings {sorted(unknown)} for {algo}")
    cfg = cls(**d)
    validate(cfg)
    return cfg
