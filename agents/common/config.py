"""Training configurations: one dataclass per algorithm, every hyper-parameter a documented field.

``make_config(algo, env_id, overrides)`` starts from the dataclass defaults, applies the per-task
defaults in ``TASK_DEFAULTS`` and then the user's ``key=value`` overrides (``twin train --set``).
The dataclasses are pydantic's: each value is parsed from its text by the field's type (integers
exactly, however many digits; ``1e6`` is an integer too), and checked against the bounds in the
field's annotation, with every problem in one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass


class ConfigError(ValueError):
    """A bad ``--set`` key or value."""


_STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True, arbitrary_types_allowed=False)
LOG_STD_BOUNDS = (-5.0, 2.0)
"""The range of the SAC actor's log standard deviation (before the tanh)."""


def _from_text(value: Any, info) -> Any:
    """``--set`` values arrive as text: integers are parsed exactly (``1e6`` and ``2_000`` too) and
    objects and lists as JSON; everything else is left to the field's own type."""
    if not isinstance(value, str):
        return value
    kind = _kind(info.config, info.field_name)
    if kind == "int":
        try:
            d = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            return value
        return int(d) if d.is_finite() and d == d.to_integral_value() else value
    if kind in ("dict", "list"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed
    return value


def _kind(_config: Any, name: str | None) -> str:
    return _KINDS.get(name or "", "")


@dataclass(config=_STRICT)
class TrainConfig:
    """Settings every algorithm shares."""

    env_id: Annotated[str, Field(min_length=1)] = "FactoryReach-v0"
    """Gymnasium id of the env to train on (any registered id, not only this package's)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gym.make`` (e.g. ``{"obs_mode": "goal"}``)."""
    total_steps: Annotated[int, Field(ge=1, le=10**12)] = 100_000
    """Env steps to train for, summed over all envs (BC: gradient steps)."""
    n_envs: Annotated[int, Field(ge=1, le=4096)] = 1
    """Parallel envs, spread over the worker processes."""
    workers: Annotated[int, Field(ge=0, le=1024)] = 0
    """Env worker processes (Ray actors with ``backend=ray``); 0: one per CPU core, at most one per env."""
    double_buffer: bool = True
    """Each worker steps half its envs while the learner acts on the other half."""
    learner_threads: Annotated[int, Field(ge=0, le=1024)] = 0
    """CPU threads of the learner's torch ops; 0: the cores the env workers leave free (at least
    one). SAC with wide networks on few cores, whose workers wait through most of its updates, can
    take every core: on 2 cores SAC on ConveyorPick-v1 at its from-demos updates (2 x 256
    networks, two updates per env step) collected 1.42 times the env steps per second with 2
    threads, where SAC with 32-wide networks on a toy env ran about three times slower with them.
    DAgger's fits, which the workers wait through, take every core when this is 0."""
    pin_workers: bool = True
    """Bind each local env worker to a core of those this process may use (give concurrent runs
    their own cores with ``taskset -c``, or turn this off)."""
    collect: Literal["async", "sync"] = "async"
    """``async``: act on the envs of whichever workers have finished, so none waits for the
    slowest; ``sync``: step every env in lock-step (bit-reproducible runs, slower)."""
    backend: Literal["local", "ray"] = "local"
    """``local`` worker processes, or ``ray`` actors (the cluster at ``RAY_ADDRESS``, else a local one)."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    net_width: Annotated[int, Field(ge=1, le=8192)] = 256
    """Units per hidden layer of every network."""
    net_depth: Annotated[int, Field(ge=1, le=32)] = 2
    """Hidden layers of every network."""
    norm_floor: Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)] = 0.01
    """Smallest spread (standard deviation, in each feature's own units) the observation normaliser
    divides by: a feature the data never varied (a flag always 0 in the demos) is not scaled up
    ten-thousandfold and clipped the first time it moves. Runs saved before it existed used 0."""
    image_shift: Annotated[int, Field(ge=0, le=16)] = 0
    """Image observations: each training image is shifted by up to this many pixels each way, a
    random shift per sample (DrQ's augmentation); 0: none. Off by default; not settled: in single
    runs of DAgger from ConveyorPick's scene camera (20 held-out seeds), 4 pixels held out 0.55 at
    20,000 env steps and 0.0 at 40,000, while without a shift one run held out 1.0 at 20,000 and
    another 0.0: the runs differ more from each other than the shift changes them."""
    compile: bool = False
    """Compile the update step with ``torch.compile`` (falls back to eager where unsupported)."""
    eval_episodes: Annotated[int, Field(ge=0, le=100_000)] = 100
    """Episodes of the final evaluation, on the fixed evaluation seeds."""
    eval_every: Annotated[int, Field(ge=0, le=10**12)] = 0
    """Env steps between evaluations of the deterministic policy while training PPO or SAC (0: none). They
    run ``progress_episodes`` episodes on held-out seeds (not the final evaluation's) and log
    ``progress_success_rate``: the curve of what the policy can do, where the training success
    rate shows the exploring policy's episodes."""
    progress_episodes: Annotated[int, Field(ge=1, le=100_000)] = 20
    """Episodes of each evaluation during training."""
    max_seconds: Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)] = 0.0
    """A wall-clock budget for PPO, SAC and DAgger (0: none): training ends at the first step past it, as if
    the step budget had been reached (the last evaluation during training, a checkpoint, then the
    final evaluation, which the budget does not include). It counts the whole run, evaluations
    during training and earlier lives of a resumed run included, and keeps back for the last
    evaluation during training 1.25 times the longest one before it, so that the run ends within it."""
    keep_best: bool = True
    """With ``eval_every``: keep the policy that scored best in the evaluations during training
    (success rate, then mean return; the final weights are evaluated too) as ``checkpoints/best``.
    The final evaluation, ``twin eval RUN`` and ``twin export RUN`` then use it; ``latest`` stays
    the checkpoint a run resumes from. False: the run stands for its final weights."""
    checkpoint_every: Annotated[int, Field(ge=1, le=10**12)] = 50_000
    """Steps between checkpoints (one is always written at the end)."""
    difficulty_curriculum: bool = False
    """PPO and SAC: train through the task's easier knob settings first (``Task.curriculum_stages``;
    ConveyorPick: one part on a belt at half speed, one part, two parts), all envs moving on together
    once the last ``difficulty_window`` episodes at a stage succeeded at ``difficulty_threshold``;
    the evaluations always play the task as made (``agents.collect.difficulty``). Local workers."""
    difficulty_window: Annotated[int, Field(ge=1, le=1000)] = 16
    """Episodes at a stage (on any env) over which its success rate is judged."""
    difficulty_threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.5
    """Success rate at a stage over ``difficulty_window`` episodes at which the run moves on."""
    log_every: Annotated[int, Field(ge=1, le=10**12)] = 2_000
    """Steps between metric lines."""

    _text = field_validator("*", mode="before")(_from_text)


@dataclass(config=_STRICT)
class PPOConfig(TrainConfig):
    """Proximal Policy Optimisation for continuous actions (clipped objective, GAE)."""

    lr: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 3e-4
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over training."""
    n_steps: Annotated[int, Field(ge=1, le=100_000)] = 128
    """Rollout length per env between updates."""
    gamma: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.99
    gae_lambda: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.95
    n_minibatches: Annotated[int, Field(ge=1, le=100_000)] = 4
    update_epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    clip_coef: Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)] = 0.2
    ent_coef: Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)] = 0.0
    vf_coef: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)] = 0.5
    max_grad_norm: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] = 0.5
    init_log_std: Annotated[float, Field(ge=-20.0, le=2.0, allow_inf_nan=False)] = -0.5
    """Initial log standard deviation of the Gaussian policy."""
    norm_obs: bool = True
    """Normalise observations with running statistics (updated once per rollout, saved with the
    model, frozen at evaluation)."""
    reward_scale: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] = 1.0
    cuda_graph: bool = True
    """On CUDA, replay the acting step and the whole update (GAE and every minibatch step) as
    captured CUDA graphs."""


@dataclass(config=_STRICT)
class SACConfig(TrainConfig):
    """Soft Actor-Critic, with hindsight goal relabelling (HER) on goal-dict envs."""

    lr: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1e-3
    lr_final_scale: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1.0
    """The learning rates (the critics', the actor's and the temperature's) fall linearly from
    ``lr`` to ``lr * lr_final_scale`` over training, measured by its env steps (``total_steps``)
    or its wall-clock budget (``max_seconds``), whichever is further along; 1: constant. Late
    updates then move the weights less, against a policy that drifts from its best."""
    buffer_size: Annotated[int, Field(ge=1, le=10**9)] = 1_000_000
    batch_size: Annotated[int, Field(ge=1, le=10**6)] = 256
    gamma: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.95
    tau: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.05
    """Polyak factor of the target critics."""
    actor_average: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)] = 0.0
    """The policy evaluated, kept and exported is a running average of the actor's weights
    (Nikishin et al. 2018), moved this share of the way to the actor at each actor update (about
    ``1 / actor_average`` actor updates remembered); 0: the actor itself. The actor still acts
    while training. State observations only: on images the encoder the actor reads keeps
    changing under the average."""
    learning_starts: Annotated[int, Field(ge=0, le=10**12)] = 1_000
    """Env steps of uniform random actions before learning."""
    updates_per_step: Annotated[float, Field(gt=0.0, le=64.0, allow_inf_nan=False)] = 0.5
    """Critic updates per env step (per sub-env step): the update-to-data ratio (RLPD: 20). On a
    CPU more updates per step can mean fewer steps, and less learned, per minute."""
    num_qs: Annotated[int, Field(ge=1, le=64)] = 2
    """Critics in the ensemble (RLPD: 10), trained as one batched network (their weights stacked,
    one batched matrix product per layer)."""
    num_min_qs: Annotated[int, Field(ge=1, le=64)] = 2
    """The critics' target is the minimum over this many critics drawn at random each update
    (RLPD: 2 of 10); all of them when it equals ``num_qs``."""
    actor_q: Literal["min", "mean"] = "min"
    """What the actor maximises: the minimum of the critics' values or their mean (RLPD)."""
    actor_every: Annotated[int, Field(ge=1, le=64)] = 1
    """Critic updates per actor and temperature update (RLPD: one actor update per group of
    ``updates_per_step`` critic updates)."""
    target_entropy_scale: Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)] = 1.0
    """The temperature is tuned towards an entropy of ``-target_entropy_scale * |A|`` (RLPD: 0.5)."""
    explore_dims: list[Annotated[int, Field(ge=0, le=63)]] = field(default_factory=list)
    """Action dimensions explored by temporally-extended epsilon-greedy (Dabney et al. 2021's
    epsilon-z-greedy): at each env step, an env not already exploring starts with probability
    ``explore_prob`` an excursion in which these dimensions hold one uniform random value (over
    their range) for 1 to ``explore_hold`` steps in place of the policy's. For a command the
    policy has learned never to give where it rarely is, such as opening the gripper over the bin
    (ConveyorPick: ``[3]``). The replay stores the action taken. ``explore_groups`` explores
    groups of dimensions apart."""
    explore_groups: list[list[Annotated[int, Field(ge=0, le=63)]]] = field(default_factory=list)
    """In place of ``explore_dims``: groups of action dimensions, each with excursions of its own
    (drawn apart, so one group's may start, end or overlap another's). ConveyorPick's
    ``[[0, 1, 2], [3]]`` moves the part at random while the gripper holds the policy's command,
    and opens or closes the gripper while the arm holds the policy's motion."""
    explore_prob: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0
    """Per env step, the chance that an env starts an ``explore_dims`` excursion (with
    ``explore_groups``: each group's, drawn apart)."""
    explore_hold: Annotated[int, Field(ge=1, le=1000)] = 10
    """The longest excursion, in env steps (each lasts 1 to this many, uniformly)."""
    backup_entropy: bool = True
    """Subtract the next action's entropy term in the critics' target (soft Q); False: plain
    clipped double-Q targets, as RLPD uses on sparse-reward tasks."""
    n_step_return: Annotated[int, Field(ge=1, le=100)] = 1
    """Rewards summed in each critic target (n-step returns): a transition's target adds up to
    this many discounted rewards of its episode, from it on, before the next state's value, so
    the steps an exploring excursion took after an action count towards that action's value.
    The summed steps are those the behaviour took (no off-policy correction), the entropy term
    comes in at the last state only, and demonstrations are summed within their episodes."""
    her_ratio: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)] = 0.8
    """Fraction of sampled transitions whose goal is relabelled with a future achieved goal (goal envs)."""
    init_alpha: Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)] = 0.1
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
    demo_ratio: Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)] = 0.5
    critic_layernorm: bool = False
    """LayerNorm in the critics' hidden layers (on by default with ``demos``, as in RLPD)."""
    bc_weight: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)] = 0.0
    """With ``demos``: the weight of a behaviour-cloning term in the actor's loss, the squared
    distance of the actor's mean action from the demonstrated one on each batch's demonstration
    transitions (Nair et al. 2018); 0 leaves the actor to the critics alone. With
    ``init_policy`` the term clones the student instead, on every state of the batch: its action
    there, from a frozen copy of the actor as it started. Its readings are logged with the
    losses: ``bc_distance`` (that distance, the mean over every row cloned) and ``bc_kept`` (the
    share of those rows the Q-filter keeps). ConveyorPick-v1 from demos defaults to 1, unfiltered."""
    bc_q_filter: bool = True
    """Count a demonstration transition (or the student's action) in the cloning term only where
    the critics value its action above the actor's own (the Q-filter), so the actor follows the
    demos (or the student) only until it does better than them."""
    base_policy: str = ""
    """Residual RL: a run or checkpoint folder of this env (any algorithm; an imitation student)
    whose policy stays frozen while the agent learns a correction to it. The env gets the base's
    action plus ``residual_scale`` times the agent's (in half-ranges of the action space), and the
    agent starts as the base (its correction's mean begins at zero)."""
    init_policy: str = ""
    """Fine-tuning: a BC or DAgger run (or checkpoint folder) of this env whose student the actor
    starts as. The student's layers become the actor's mean (its net_width and net_depth must be
    the run's) and its observation normaliser the run's, held fixed so that the student's inputs
    stay as it learned them; the actor acts from the first env step (no uniform warm-up) and the
    run evaluates it at step 0. Unlike ``base_policy``, nothing stays frozen: RL may move the whole
    policy, so start it narrow (``actor_init_std``) behind a critic burn-in (``actor_starts``)."""
    residual_scale: Annotated[float, Field(gt=0.0, le=2.0, allow_inf_nan=False)] = 0.2
    """The largest correction to the base policy's action, as a fraction of the action's half-range."""
    actor_init_std: Annotated[float, Field(ge=0.0, le=7.0, allow_inf_nan=False)] = 0.0
    """The actor's spread when training starts: the standard deviation of its Gaussian before the
    tanh, the same in every state (the log-std head's weights zeroed, its bias set to give it);
    0 leaves the network's own initialisation (a spread that varies from state to state, about
    0.07 to 0.9 at the default widths). A residual run on a base that
    tolerates little noise (``bench/exploration_noise.py`` measures how little) starts narrow,
    with ``target_entropy_scale`` holding it there (about ``-log(std) - 1.4`` per dimension)."""
    actor_starts: Annotated[int, Field(ge=0, le=10**12)] = 0
    """Env steps of critic updates alone before the actor and the temperature first update (critic
    burn-in): the actor keeps acting as it started (a residual run: the base, with its spread)
    while the critics learn its values, instead of following an untrained critic's gradient."""
    base_config: dict[str, Any] = field(default_factory=dict)
    """The base policy's own saved config, copied in when training starts so that the run's
    checkpoints rebuild the base without its folder; not set by hand."""
    curriculum: bool = False
    """Reverse curriculum over the demos (RFCL): episodes start part-way along a demonstration,
    near its end, and the start moves back as the agent succeeds from it
    (``agents.collect.curriculum``). Needs ``demos``; the demos' seeds and executed actions are
    replayed to reach the starts."""
    curriculum_step_back: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.1
    """How far a mastered start moves back, as a fraction of the demonstrations."""
    curriculum_window: Annotated[int, Field(ge=1, le=1000)] = 8
    """Episodes from the current start (on any env) over which its success rate is judged."""
    curriculum_threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.75
    """Success rate over ``curriculum_window`` episodes at which a start counts as mastered."""
    curriculum_real_starts: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.2
    """Fraction of episodes from the task's real initial states while the curriculum runs."""
    curriculum_horizon_ratio: Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)] = 3.0
    """Curriculum episodes end after this many times the steps the demonstration took from the
    start to its end (at least 50), besides the env's own time limit."""


@dataclass(config=_STRICT)
class BCConfig(TrainConfig):
    """Behaviour cloning: regress the expert's actions from its observations."""

    demos: str = ""
    """Demonstrations file written by ``twin demos``."""
    total_steps: Annotated[int, Field(ge=1, le=10**12)] = 20_000
    lr: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1e-3
    batch_size: Annotated[int, Field(ge=1, le=10**6)] = 512
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 1e-5
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.5, allow_inf_nan=False)] = 0.05
    """Share of demo episodes held out to report a validation loss."""
    norm_obs: bool = True
    log_every: Annotated[int, Field(ge=1, le=10**12)] = 500
    checkpoint_every: Annotated[int, Field(ge=1, le=10**12)] = 5_000


@dataclass(config=_STRICT)
class DAggerConfig(TrainConfig):
    """DAgger (dataset aggregation): the student drives, the scripted expert labels every state it
    reaches, and the student is fitted to all the labels gathered so far."""

    total_steps: Annotated[int, Field(ge=1, le=10**12)] = 200_000
    n_envs: Annotated[int, Field(ge=1, le=4096)] = 8
    round_steps: Annotated[int, Field(ge=1, le=10**9)] = 4_000
    """Env steps (over all envs) per round: each round rolls the student out, then fits it."""
    beta0: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 1.0
    """The expert's share of control in the first round (each step, each env: the expert's action
    with this chance, else the student's); 1: the first round is the expert's demonstrations."""
    beta_decay: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.5
    """The expert's share is multiplied by this every round."""
    updates_per_round: Annotated[int, Field(ge=0, le=10**7)] = 1_000
    """Gradient steps on the aggregate after each round."""
    lr: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1e-3
    batch_size: Annotated[int, Field(ge=1, le=10**6)] = 512
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 1e-5
    buffer_size: Annotated[int, Field(ge=1, le=10**9)] = 2_000_000
    """Labelled states kept (the oldest are dropped beyond it)."""
    demos: str = ""
    """Recorded demonstrations (``twin demos``) to start the aggregate with (optional)."""
    norm_obs: bool = True
    log_every: Annotated[int, Field(ge=1, le=10**12)] = 4_000
    checkpoint_every: Annotated[int, Field(ge=1, le=10**12)] = 20_000


CONFIGS: dict[str, type[TrainConfig]] = {"ppo": PPOConfig, "sac": SACConfig, "bc": BCConfig, "dagger": DAggerConfig}

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
# ConveyorPick-v1 is -v0's task with what a learner needs observed and rewards that teach: the same
# RL settings (its BC keeps the network its DAgger student has, as the imitation bench compares
# them). Its one-part skill (200 steps) from scratch: the same, on a shorter budget.
for _algo in ("ppo", "sac", "sac+demos"):
    TASK_DEFAULTS[("ConveyorPick-v1", _algo)] = dict(TASK_DEFAULTS[("ConveyorPick-v0", _algo)])
# From 20 demos on the 2-core machine (bench/learning.py --matrix rl), two critic updates per
# env step with the actor every second one scored a median 0.84 on the final weights against
# 0.25 for 0.5 updates and the actor every one, in the same 20 minutes: the 0.5 left two-thirds
# of them unused; and a cloning term on the demos' actions, weight 1, on every demo row (no
# Q-filter: the pull TD3+BC keeps on). With the Q-filter the critics let 5-18% of the demo rows
# through and the actor drifted from the demos (medians of 0.66 and 0.81 on the final weights,
# runs up to 0.34 below their best held-out); unfiltered, 0.99, 1.00 and 0.92 (median 0.99,
# against 0.77 without the term), at most 0.08 below their best (bench/learning.py --matrix rl,
# the 2-core machine), measured again as the defaults: 0.96, 0.99 and 1.00
TASK_DEFAULTS[("ConveyorPick-v1", "sac+demos")] |= {
    "updates_per_step": 2,
    "actor_every": 2,
    "bc_weight": 1.0,
    "bc_q_filter": False,
}
# The one-part skill from scratch (bench/learning.py --matrix rl, the skill rows, each measured
# from the one before it): the staged reward, a target entropy of 0, the arm's motion and its
# gripper each given held random excursions of their own, and one critic update per env step.
# On the 2-core machine these placed 0.81, 0.00 and 0.94 of the parts on the fixed seeds within
# 150,000 env steps (median 0.81), where SAC's own settings grip the part and hold it (0.00)
TASK_DEFAULTS[("ConveyorPickSkill-v1", "sac")] = {
    **TASK_DEFAULTS[("ConveyorPick-v0", "sac")],
    "total_steps": 150_000,
    "env_kwargs": {"reward_type": "staged"},
    "target_entropy_scale": 0.0,
    "explore_groups": [[0, 1, 2], [3]],
    "explore_prob": 0.01,
    "updates_per_step": 1.0,
}
TASK_DEFAULTS[("ConveyorPickSkill-v1", "ppo")] = {
    **TASK_DEFAULTS[("ConveyorPick-v0", "ppo")],
    "total_steps": 1_000_000,
    "n_steps": 200,
}


def _kinds() -> dict[str, str]:
    """Each setting's kind (``int``, ``float``, ``bool``, ``str``, ``dict``, ``list``), over every algorithm."""
    out: dict[str, str] = {}
    for cls in CONFIGS.values():
        for name, info in cls.__pydantic_fields__.items():
            ann = info.annotation
            out[name] = next(
                (k for t, k in ((bool, "bool"), (int, "int"), (float, "float"), (dict, "dict")) if ann is t), ""
            ) or {dict: "dict", list: "list"}.get(getattr(ann, "__origin__", None), "str")
    return out


_KINDS = _kinds()


def _bounds(cls: type[TrainConfig], name: str) -> str:
    """A setting's bounds as ``[low, high]`` (a round bracket where an end is excluded)."""
    lo = hi = None
    lo_open = hi_open = False
    for m in cls.__pydantic_fields__[name].metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_open = m.lt, True
    show = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:g}"  # noqa: E731
    return f"{'(' if lo_open else '['}{show(lo)}, {show(hi)}{')' if hi_open else ']'}"


def _show(value: Any, limit: int = 80) -> str:
    """A value as the error shows it: its repr, cut short when long (a value may be anything)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


_WANTS = {
    "int": "an int",
    "float": "a float",
    "bool": "true or false",
    "str": "a string",
    "dict": "a JSON object",
    "list": "a JSON list",
}


def _problems(cls: type[TrainConfig], exc: ValidationError) -> list[str]:
    """pydantic's errors as one line each, naming the setting, what it takes and what it got."""
    out = []
    for e in exc.errors(include_url=False):
        name = str(e["loc"][0]) if e["loc"] else "config"
        got = e.get("input")
        kind = e["type"]
        item = "".join(f"[{k}]" for k in e["loc"][1:])
        if len(e["loc"]) > 1 and kind == "list_type":  # an entry of a list of lists
            out.append(f"{name}{item}: expected a JSON list, got {_show(got)}")
        elif len(e["loc"]) > 1 and not kind.endswith("_type"):  # an entry of a list or object setting
            out.append(f"{name}{item}: {e['msg'].replace('Input should be', 'must be')}, got {_show(got)}")
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            out.append(f"{name} must be in {_bounds(cls, name)}, got {_show(got)}")
        elif kind == "finite_number":
            out.append(f"{name} must be a finite number, got {_show(got)}")
        elif kind == "literal_error":
            out.append(f"{name}: {e['msg'].replace('Input should be', 'expected')}, got {_show(got)}")
        elif kind.endswith(("_parsing", "_type", "_from_float")) and name in _KINDS:
            out.append(f"{name}: expected {_WANTS[_KINDS[name]] if _KINDS[name] else _KINDS[name]}, got {_show(got)}")
        else:
            out.append(f"{name}: {e['msg']}, got {_show(got)}")
    return out


def _build(cls: type[TrainConfig], values: dict[str, Any]) -> TrainConfig:
    try:
        cfg = cls(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_problems(cls, exc))) from None
    validate(cfg)
    return cfg


IMAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    # each image update costs some 50 times a state update (one 84x84 camera, 2-core CPU): a smaller
    # batch and fewer updates per round; and a third of the learning rate, at which ConveyorPick's
    # scene-camera students held their success once they drove (at 1e-3 one run fell from 1.0 to 0.0)
    "dagger": {"lr": 3e-4, "batch_size": 256, "updates_per_round": 600},
}
"""Defaults for learners on image observations (``env_kwargs`` with ``obs_mode="rgb"``), over the
per-task ones; settings given explicitly win."""


def _images_asked(values: dict[str, Any]) -> bool:
    kwargs = values.get("env_kwargs")
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except ValueError:
            return False  # refused, naming the field, when the config is built
    return isinstance(kwargs, dict) and kwargs.get("obs_mode") == "rgb"


_ONE_OF = ("explore_dims", "explore_groups")
"""Settings of which a run takes one: one given by the user drops the other's per-task default."""


def make_config(algo: str, env_id: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Dataclass defaults, then per-task defaults, then ``overrides`` (text is parsed by field type);
    on image observations, ``IMAGE_DEFAULTS`` under the overrides."""
    if algo not in CONFIGS:
        raise ConfigError(f"unknown algorithm {algo!r}: expected one of {sorted(CONFIGS)}")
    cls = CONFIGS[algo]
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {"env_id": env_id, **TASK_DEFAULTS.get((env_id, algo), {})}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{algo} has no setting {_show(key)}{hint} (settings: {', '.join(sorted(fields))})")
        values[key] = raw
    if any(key in (overrides or {}) for key in _ONE_OF):  # the user's pick sets the task's aside
        for key in _ONE_OF:
            if key not in (overrides or {}):
                values.pop(key, None)
    if _images_asked(values):
        for key, value in IMAGE_DEFAULTS.get(algo, {}).items():
            if key not in (overrides or {}):
                values[key] = value
    if algo == "sac" and values.get("demos"):  # RL from demonstrations: RLPD's settings
        demo_defaults = {"critic_layernorm": True, **TASK_DEFAULTS.get((env_id, "sac+demos"), {})}
        for key, value in demo_defaults.items():
            if key not in (overrides or {}):
                values[key] = value
    return _build(cls, values)


def explore_groups(cfg: SACConfig) -> list[list[int]]:
    """The groups of action dimensions explored, each with its own excursions (none: [])."""
    return [list(g) for g in cfg.explore_groups] or ([list(cfg.explore_dims)] if cfg.explore_dims else [])


def explore_setting(cfg: SACConfig) -> tuple[str, list]:
    """The exploration setting given, by name and value, for errors that quote it."""
    return ("explore_groups", cfg.explore_groups) if cfg.explore_groups else ("explore_dims", cfg.explore_dims)


def _exploration_problems(cfg: SACConfig) -> list[str]:
    problems = []
    if cfg.explore_dims and cfg.explore_groups:
        problems.append(
            f"explore_dims ({cfg.explore_dims}) and explore_groups ({cfg.explore_groups}): give one, not "
            "both (explore_dims is one group)"
        )
    named, shown = explore_setting(cfg)
    if bool(shown) != (cfg.explore_prob > 0):
        problems.append(
            f"{named} ({shown}) and explore_prob ({cfg.explore_prob:g}) go together: the "
            "dimensions to explore and the chance per env step of starting to explore them"
        )
    if any(not g for g in cfg.explore_groups):
        problems.append(f"explore_groups ({cfg.explore_groups}) has an empty group: each names a dimension or more")
    dims = [d for g in explore_groups(cfg) for d in g]
    if len(set(dims)) != len(dims):
        problems.append(f"{named} ({shown}) names a dimension more than once")
    return problems


def validate(cfg: TrainConfig) -> None:
    """What the field types cannot say: settings that must agree with each other."""
    problems = []
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        problems.append(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    if isinstance(cfg, PPOConfig):
        batch = cfg.n_steps * cfg.n_envs
        if batch % cfg.n_minibatches:
            problems.append(f"n_minibatches ({cfg.n_minibatches}) must divide n_steps * n_envs ({batch})")
    if isinstance(cfg, SACConfig) and cfg.curriculum and not cfg.demos:
        problems.append("curriculum needs demos (--demos FILE): its starts are states along the demonstrations")
    if isinstance(cfg, SACConfig) and cfg.curriculum and cfg.backend == "ray":
        problems.append("curriculum runs on local workers (they share its start in shared memory), not backend=ray")
    if cfg.difficulty_curriculum and isinstance(cfg, BCConfig | DAggerConfig):
        problems.append("difficulty_curriculum is for PPO and SAC (BC and DAgger copy the expert on the task itself)")
    if cfg.difficulty_curriculum and cfg.backend == "ray":
        problems.append(
            "difficulty_curriculum runs on local workers (they share its stage in shared memory), not backend=ray"
        )
    if cfg.difficulty_curriculum and isinstance(cfg, SACConfig) and cfg.curriculum:
        problems.append(
            "difficulty_curriculum and curriculum do not mix: the reverse curriculum replays demos that were "
            "recorded with the run's own env kwargs"
        )
    if isinstance(cfg, SACConfig) and cfg.base_policy and cfg.demos:
        problems.append(
            "base_policy and demos do not mix: residual RL learns a correction from its own rollouts (RLPD from "
            "demos learns the whole action)"
        )
    if isinstance(cfg, SACConfig) and cfg.base_policy and cfg.init_policy:
        problems.append(
            "base_policy and init_policy do not mix: a residual run keeps its base frozen and learns a correction, "
            "a fine-tuning run starts its actor as the student and moves it"
        )
    if isinstance(cfg, SACConfig) and cfg.bc_weight > 0 and not (cfg.demos or cfg.init_policy):
        problems.append(
            f"bc_weight ({cfg.bc_weight:g}) needs demos (--demos FILE) or init_policy: it clones the demonstrations' "
            "or the student's actions"
        )
    if isinstance(cfg, SACConfig) and cfg.base_config and not cfg.base_policy:
        problems.append("base_config is copied in from base_policy when training starts; set base_policy instead")
    if isinstance(cfg, SACConfig) and 0 < cfg.actor_init_std <= math.exp(LOG_STD_BOUNDS[0]):
        problems.append(
            f"actor_init_std ({cfg.actor_init_std:g}) must be 0 (the network's own) or above the actor's smallest "
            f"spread, {math.exp(LOG_STD_BOUNDS[0]):.4f}"
        )
    if isinstance(cfg, SACConfig) and cfg.num_min_qs > cfg.num_qs:
        problems.append(
            f"num_min_qs ({cfg.num_min_qs}) must not exceed num_qs ({cfg.num_qs}): the target's minimum is "
            "over critics drawn from the ensemble"
        )
    if isinstance(cfg, SACConfig):
        problems += _exploration_problems(cfg)
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
        raise ConfigError(f"unknown algorithm {_show(algo)} in a saved config")
    cls = CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"saved config has unknown settings {_show(sorted(unknown))} for {algo}")
    d.setdefault("norm_floor", 0.0)  # saved before the floor existed: their normaliser had none
    return _build(cls, d)
