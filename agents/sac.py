"""SAC for continuous actions, with hindsight experience replay on goal-dict envs.

Read top to bottom: networks, the losses, the update (``Updater``: eager, compiled, or on CUDA
one captured graph that samples, relabels, steps the critics, actor and temperature and moves
the targets), then ``train``. ``train`` runs the envs asynchronously: it takes the results of
whichever workers have finished, stores them in the device replay buffer, acts for those envs
(one forward pass, one device-to-host copy) and sends them off again, then runs the updates
owed while the workers step. With ``overlap_updates`` the actions just sent come from the
weights before those updates (one update round old); without it the learner updates first and
the workers wait.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from agents.collect import demos as demos_io
from agents.common import checkpoint as ckpt
from agents.common.buffers import DemoBuffer, ReplayBuffer, demo_rows, mixed_sample
from agents.common.config import LOG_STD_BOUNDS, ConfigError, SACConfig, explore_groups, explore_setting
from agents.common.graphs import BatchedAct, capture, set_lr
from agents.common.nets import ActionScale, DeterministicPolicy, EnsembleMLP, Identity, RunningNorm, mlp
from agents.common.rewards import goal_reward
from agents.common.runtime import EpisodeStats, Run, compiled
from agents.common.spaces import (
    ImageLayout,
    flatdim,
    flatten_batch,
    flatten_one,
    goal_slices,
    image_layout,
    is_goal_space,
)
from agents.common.vision import Encoder, PixelNorm, random_shift

SQUASH = "tanh"
LOG_STD_MIN, LOG_STD_MAX = LOG_STD_BOUNDS
NORM_ROWS = 64
"""Observations collected between updates of the normaliser's statistics."""


class MeanHead(nn.Module):
    """The first ``n`` outputs of a network (the actor's mean, for the deterministic policy)."""

    def __init__(self, net: nn.Module, n: int) -> None:
        super().__init__()
        self.net, self.n = net, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[..., : self.n]


class Backup(NamedTuple):
    """What shapes the losses beyond the batch (constants to ``torch.compile``)."""

    gamma: float
    num_min_qs: int
    backup_entropy: bool
    actor_q: str
    bc_weight: float = 0.0
    bc_rows: int = 0
    """The batch's last rows that are demonstrations (``mixed_sample``), which the cloning term reads."""
    bc_q_filter: bool = True
    anchored: bool = False
    """The cloning term's targets are the student's actions (``SACAgent.anchor``) on every state of
    the batch, instead of the demonstrations' on their rows."""

    @classmethod
    def of(cls, cfg: SACConfig) -> Backup:
        anchored = bool(cfg.init_policy) and cfg.bc_weight > 0
        rows = demo_rows(cfg.batch_size, cfg.demo_ratio) if cfg.demos and cfg.bc_weight > 0 and not anchored else 0
        return cls(
            cfg.gamma, cfg.num_min_qs, cfg.backup_entropy, cfg.actor_q, cfg.bc_weight, rows, cfg.bc_q_filter, anchored
        )


class SACAgent(nn.Module):
    """Actor, temperature and an ensemble of ``num_qs`` critics with their targets.

    On images (``layout``), as DrQ: one convolutional ``Encoder`` (with a target copy) turns the
    normalised observation into features for the critics and the actor; the critics' loss trains
    it, and the actor reads its features detached. Without images the features are the
    normalised observation itself."""

    def __init__(
        self, cfg: SACConfig, obs_dim: int, act_dim: int, act_low, act_high, layout: ImageLayout | None = None
    ) -> None:
        super().__init__()
        w, d = cfg.net_width, cfg.net_depth
        self.act_dim = act_dim
        self.encoder: Encoder | None = None
        self.encoder_target: Encoder | None = None
        self.shift = cfg.image_shift
        feat = obs_dim
        if layout is None:
            self.norm = RunningNorm(obs_dim, min_std=cfg.norm_floor) if cfg.norm_obs else Identity()
        else:
            if cfg.base_config:
                raise ValueError("residual RL (base_policy) takes state observations, not images")
            self.norm = PixelNorm(layout, min_std=cfg.norm_floor if cfg.norm_obs else 0.0)
            self.encoder, self.encoder_target = Encoder(layout), Encoder(layout)
            self.encoder_target.load_state_dict(self.encoder.state_dict())
            self.encoder_target.requires_grad_(False)
            feat = self.encoder.out_dim
        self.layout = layout
        self.actor = mlp(feat, 2 * act_dim, w, d)
        ln = cfg.critic_layernorm
        self.critic = EnsembleMLP(cfg.num_qs, feat + act_dim, 1, w, d, layer_norm=ln)
        self.critic_target = EnsembleMLP(cfg.num_qs, feat + act_dim, 1, w, d, layer_norm=ln)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(cfg.init_alpha))))
        self.scale = ActionScale(act_low, act_high)
        self._register_load_state_dict_pre_hook(self._two_critics_to_ensemble)
        self.base_agent: nn.Module | None = None
        self.residual_scale = cfg.residual_scale
        if cfg.base_config:  # residual RL: a frozen base policy, a correction that starts at zero
            from agents.common.config import algo_of, from_dict
            from agents.train import ALGOS

            base_cfg = from_dict(cfg.base_config)
            self.base_agent = ALGOS[algo_of(base_cfg)].build(base_cfg, obs_dim, act_dim, act_low, act_high)
            self.base_agent.requires_grad_(False)
            with torch.no_grad():
                self.actor[-1].weight[:act_dim].zero_()
                self.actor[-1].bias[:act_dim].zero_()
        if cfg.actor_init_std > 0:  # one spread in every state: the log-std head's weights zeroed
            level = 2 * (np.log(cfg.actor_init_std) - LOG_STD_MIN) / (LOG_STD_MAX - LOG_STD_MIN) - 1
            with torch.no_grad():
                self.actor[-1].weight[act_dim:].zero_()
                self.actor[-1].bias[act_dim:].fill_(float(np.arctanh(level)))
        # the student the actor started as, frozen, which the cloning term pulls it back to
        # (``init_policy`` with ``bc_weight``); ``seed_actor`` fills it
        self.anchor: nn.Module | None = None
        if cfg.init_policy and cfg.bc_weight > 0:
            self.anchor = copy.deepcopy(self.actor).requires_grad_(False)
        # the running average of the actor's weights that is the policy (``actor_average``)
        self.actor_avg: nn.Module | None = None
        if cfg.actor_average > 0:
            self.actor_avg = copy.deepcopy(self.actor).requires_grad_(False)

    def base_policy(self) -> nn.Module | None:
        """The frozen base policy (raw observations to actions), or None without one."""
        return None if self.base_agent is None else self.base_agent.policy().eval()

    def env_action(self, x_raw: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The env's action for the squashed action ``u`` taken at raw observations ``x_raw``: ``u``
        mapped to the bounds, or with a base policy the base's action corrected by ``u``."""
        if self.base_agent is None:
            return self.scale(u)
        return residual_action(self.base_policy()(x_raw), u, self.scale, self.residual_scale)

    @staticmethod
    def _two_critics_to_ensemble(state, prefix, *_args) -> None:
        """Runs saved when the critics were two separate networks (``q1``, ``q2`` and their targets)
        load as an ensemble of two."""
        for old, new in ((("q1.", "q2."), "critic."), (("q1_target.", "q2_target."), "critic_target.")):
            members = [{k[len(prefix + o) :]: v for k, v in state.items() if k.startswith(prefix + o)} for o in old]
            if not all(members):
                continue
            layer_norm = any(t.dim() == 1 and k.endswith("weight") for k, t in members[0].items())
            for k in [k for k in state if k.startswith((prefix + old[0], prefix + old[1]))]:
                del state[k]
            for k, v in EnsembleMLP.stack_state(members, layer_norm).items():
                state[prefix + new + k] = v

    def upgrade_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with a two-critic run's networks renamed and stacked as this ensemble's."""
        state = dict(state)
        self._two_critics_to_ensemble(state, "")
        return state

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The critics' and actor's input for normalised observations ``x``: the encoder's features
        on images, else ``x``."""
        return x if self.encoder is None else self.encoder(x)

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Squashed action in [-1, 1] and its log-probability, from features (``features``)."""
        a, logp, _ = self.sample_with_mean(x)
        return a, logp

    def sample_with_mean(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``sample``'s action and log-probability, and the mean action before squashing (from the
        same pass through the actor)."""
        mean, log_std = self.actor(x).split(self.act_dim, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        u = mean + log_std.exp() * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        logp = logp - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(-1)  # tanh change of variables
        return a, logp, mean

    def q(self, x, a) -> torch.Tensor:
        """Every critic's value, ``[num_qs, B]``."""
        return self.critic(torch.cat([x, a], -1)).squeeze(-1)

    def q_frozen(self, x, a) -> torch.Tensor:
        """Every critic's value through detached weights (gradients reach the action, not the critics)."""
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        return functional_call(self.critic, frozen, (torch.cat([x, a], -1),)).squeeze(-1)

    def q_target(self, x, a, num_min_qs: int) -> torch.Tensor:
        """The target critics' minimum over ``num_min_qs`` of them drawn at random (all of them when
        that is the whole ensemble), ``[B]``."""
        xa, n = torch.cat([x, a], -1), self.critic_target.n
        pick = None
        if num_min_qs < n:  # one draw per update, as RLPD; argsort of uniforms is capturable
            pick = torch.rand(n, device=x.device).argsort()[:num_min_qs]
        return self.critic_target(xa, pick).squeeze(-1).min(0).values  # only the drawn critics run

    def policy(self) -> nn.Module:
        """The deterministic policy: the actor's mean action (its running average's, with
        ``actor_average``)."""
        actor = self.actor if self.actor_avg is None else self.actor_avg
        if self.base_agent is not None:
            return ResidualPolicy(
                self.base_policy(), self.norm, MeanHead(actor, self.act_dim), self.scale, self.residual_scale
            )
        head = MeanHead(actor, self.act_dim)
        if self.encoder is not None:
            head = nn.Sequential(self.encoder, head)
        return DeterministicPolicy(self.norm, head, self.scale, SQUASH)


def seed_actor(agent: SACAgent, student: str | Path) -> None:
    """Start ``agent``'s actor as the BC or DAgger student saved at ``student`` (a checkpoint
    folder): its hidden layers as they are, its output layer as the actor's mean (the log-std half
    keeps its own start), and its observation normaliser as the agent's. Both map observations to
    ``tanh`` of the same pre-squash action, so the actor's mean action is the student's."""
    folder = Path(student)
    tensors = ckpt.load_tensors(folder, ckpt.MODEL, ckpt.read_sidecar(folder), "cpu")
    where = str(folder / ckpt.MODEL)
    layers = {k[len("model.actor.") :]: v for k, v in tensors.items() if k.startswith("model.actor.")}
    last = max(int(k.split(".")[0]) for k in layers)
    own = agent.actor.state_dict()
    if set(layers) != set(own):
        raise ckpt.CheckpointError(
            f"{where}: the student's layers {sorted(layers)} are not the actor's {sorted(own)} "
            "(net_width and net_depth must be the student's)"
        )
    for key, value in layers.items():
        target = own[key][: agent.act_dim] if key.startswith(f"{last}.") else own[key]
        if target.shape != value.shape:
            raise ckpt.CheckpointError(
                f"{where}: the student's layer {key} is {tuple(value.shape)}, the actor's {tuple(target.shape)}"
            )
        with torch.no_grad():
            target.copy_(value.to(target.device))
    norm = {k[len("model.norm.") :]: v for k, v in tensors.items() if k.startswith("model.norm.")}
    if norm:
        ckpt.load_module_state(agent.norm, norm, "", where)
    for copy_of_it in (agent.actor_avg, agent.anchor):
        if copy_of_it is not None:
            copy_of_it.load_state_dict(agent.actor.state_dict())


def residual_action(base: torch.Tensor, u: torch.Tensor, scale: ActionScale, residual_scale: float) -> torch.Tensor:
    """The base's action plus ``residual_scale`` half-ranges times ``u`` (in [-1, 1]), within the bounds."""
    a = base + residual_scale * scale.half_range * u
    return torch.maximum(torch.minimum(a, scale.center + scale.half_range), scale.center - scale.half_range)


class ResidualPolicy(nn.Module):
    """A residual agent's acting policy (the module exported to ONNX): the frozen base policy's
    action, corrected by the agent's deterministic action."""

    def __init__(self, base: nn.Module, norm: nn.Module, actor: nn.Module, scale: ActionScale, residual_scale: float):
        super().__init__()
        self.base, self.norm, self.actor, self.scale, self.residual_scale = base, norm, actor, scale, residual_scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        u = torch.tanh(self.actor(self.norm(obs)))
        return residual_action(self.base(obs), u, self.scale, self.residual_scale)


def build(cfg: SACConfig, obs_dim: int, act_dim: int, act_low, act_high, layout: ImageLayout | None = None) -> SACAgent:
    return SACAgent(cfg, obs_dim, act_dim, act_low, act_high, layout)


def sac_losses(
    agent: SACAgent,
    hp: Backup,
    target_entropy: float,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    discount=None,
    actor: bool = True,
):
    """Critic, actor and temperature losses of one batch (raw observations; normalised here).

    ``discount``: each transition's factor on the next state's value (``gamma`` to the power of
    the rewards its ``rewards`` sums, as the buffers' batches carry it); None: ``gamma``.

    Each loss reaches only its own parameters (the actor's goes through frozen critic weights),
    so their sum is backpropagated once. ``actor=False``: the critics' loss alone (the actor and
    temperature losses are zeros), for the critic updates between actor updates.

    Returns (the summed loss, the critics' loss, the actor's loss, the batch's mean Q, the cloning
    term's two readings): the mean squared distance of the actor's mean action from the cloned one
    over the rows it clones, and the share of those rows the Q-filter keeps (1 without the filter);
    zeros without a cloning term or an actor update.

    On images each observation is randomly shifted (``agent.shift`` pixels, DrQ); the critics'
    loss trains the encoder, the target critics read the target encoder's features, the actor
    the encoder's detached.
    """
    if agent.encoder is None:
        x, nx = agent.norm(obs), agent.norm(next_obs)
        x_actor, nx_target = x, nx
    else:
        if agent.shift > 0:
            obs, next_obs = (
                random_shift(obs, agent.layout, agent.shift),
                random_shift(next_obs, agent.layout, agent.shift),
            )
        x = agent.encoder(agent.norm(obs))
        x_actor = x.detach()
        with torch.no_grad():
            nobs = agent.norm(next_obs)
            nx, nx_target = agent.encoder(nobs), agent.encoder_target(nobs)
    alpha = agent.log_alpha.exp().detach()
    with torch.no_grad():
        na, nlogp = agent.sample(nx)
        next_q = agent.q_target(nx_target, na, hp.num_min_qs)
        if hp.backup_entropy:
            next_q = next_q - alpha * nlogp
        target = rewards + (hp.gamma if discount is None else discount) * (1.0 - terminated) * next_q
    q = agent.q(x, actions)
    critic_loss = (q - target).square().mean(1).sum()  # each critic's mean squared error, summed
    cloning = critic_loss.new_zeros(2)
    if not actor:
        zero = critic_loss.new_zeros(())
        return critic_loss, critic_loss, zero, q.mean(), cloning
    a, logp, mean = agent.sample_with_mean(x_actor)
    qa = agent.q_frozen(x_actor, a)
    qa = qa.mean(0) if hp.actor_q == "mean" else qa.min(0).values
    actor_loss = (alpha * logp - qa).mean()
    if hp.bc_rows or hp.anchored:  # cloning the demonstrations' actions (the batch's last rows) or the student's
        # the actor's mean action from the pass above; the critics' values of the demos' actions
        # from the critics' loss (the same weights, before this update's step)
        if hp.anchored:
            x_demo, mean_a, q_demo = x_actor, torch.tanh(mean), None
            with torch.no_grad():
                a_demo = torch.tanh(agent.anchor(x_demo)[:, : agent.act_dim])
        else:
            rows = hp.bc_rows
            x_demo, a_demo, q_demo = x_actor[-rows:], actions[-rows:], q[:, -rows:].detach()
            mean_a = torch.tanh(mean[-rows:])
        gap = (mean_a - a_demo).square().sum(-1)
        keep = torch.ones_like(gap.detach())  # every row cloned, unless the filter says otherwise
        if hp.bc_q_filter:  # only where the cloned action is valued above the actor's mean one
            with torch.no_grad():
                if q_demo is None:
                    both = agent.q_frozen(torch.cat([x_demo, x_demo]), torch.cat([a_demo, mean_a]))
                    q_demo, q_mean = both.split(len(x_demo), -1)
                else:
                    q_mean = agent.q_frozen(x_demo, mean_a)
                if hp.actor_q == "mean":
                    q_demo, q_mean = q_demo.mean(0), q_mean.mean(0)
                else:
                    q_demo, q_mean = q_demo.min(0).values, q_mean.min(0).values
                keep = (q_demo > q_mean).float()
        cloning = torch.stack([gap.detach().mean(), keep.mean()])
        # outside no_grad: the kept rows' distances still train the actor
        actor_loss = actor_loss + hp.bc_weight * (gap * keep).mean()
    alpha_loss = -(agent.log_alpha * (logp.detach() + target_entropy)).mean()
    return critic_loss + actor_loss + alpha_loss, critic_loss, actor_loss, q.mean(), cloning


class Updater:
    """SAC updates: critics, actor, temperature, target networks, on batches from ``sample()``.

    Every call is one critic update; every ``actor_every``-th also updates the actor and the
    temperature. Modes: eager; ``compile_fn`` (the losses through ``torch.compile``); ``graph``
    (CUDA): the first call runs warm-up updates and captures the update as a CUDA graph (two
    graphs, with and without the actor's step, when ``actor_every`` > 1; the one with it waits
    for the end of ``actor_starts``), later calls replay them. With ``sample_in_graph`` the
    sampling (and goal relabelling, when the reward is computed on the device) is part of the
    graph; otherwise each batch is sampled eagerly and copied into the graph's inputs. Every call
    returns how many updates it ran; ``losses`` holds (critic loss, actor loss, alpha, mean Q,
    the cloning term's distance and kept share): the critics' of the last update, the actor's of
    the last actor update, on the device.
    """

    WARMUP = 3

    def __init__(
        self,
        agent: SACAgent,
        cfg: SACConfig,
        target_entropy: float,
        sample,
        device: torch.device,
        graph: bool = False,
        sample_in_graph: bool = True,
        compile_fn=None,
        note=None,
    ) -> None:
        self.agent, self.cfg, self.target_entropy, self.sample = agent, cfg, target_entropy, sample
        self.hp = Backup.of(cfg)
        self.graph_mode = graph and device.type == "cuda"
        self.sample_in_graph = sample_in_graph
        # capturable for CUDA graphs; else the fused kernels (one per parameter group, CPU and CUDA)
        kw = {"capturable": True, "foreach": True} if self.graph_mode else {"fused": True}
        critic_params = [*agent.critic.parameters()]
        if agent.encoder is not None:  # the critics' loss trains the encoder
            critic_params += [*agent.encoder.parameters()]

        def lr():  # a captured graph reads a tensor learning rate, which set_lr_scale refills
            return torch.tensor(cfg.lr, device=device) if self.graph_mode else cfg.lr

        self.critic_opt = torch.optim.Adam(critic_params, lr=lr(), **kw)
        self.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=lr(), **kw)
        self.alpha_opt = torch.optim.Adam([agent.log_alpha], lr=lr(), **kw)
        self.losses_fn = compile_fn(sac_losses) if compile_fn and not self.graph_mode else sac_losses
        targets = [(agent.critic_target, agent.critic)]
        if agent.encoder is not None:
            targets.append((agent.encoder_target, agent.encoder))
        self._targets = tuple([p for pair in targets for p in pair[k].parameters()] for k in (0, 1))
        self._average = None  # (the averaged actor's weights, the actor's)
        if agent.actor_avg is not None:
            self._average = ([*agent.actor_avg.parameters()], [*agent.actor.parameters()])
        self.device, self.note = device, note
        self.count = 0  # critic updates run, which places the actor's
        self.actor_on = True  # False while the critics burn in (``actor_starts``)
        self._graphs: dict[bool, torch.cuda.CUDAGraph] = {}
        self._outs: dict[bool, torch.Tensor] = {}
        self._inputs: tuple[torch.Tensor, ...] | None = None
        self._last: torch.Tensor | None = None
        self._last_actor: torch.Tensor | None = None

    @property
    def losses(self) -> torch.Tensor | None:
        if self._last is None or self._last_actor is None or self._last is self._last_actor:
            return self._last
        critic, actor = self._last, self._last_actor
        return torch.stack([critic[0], actor[1], actor[2], critic[3], actor[4], actor[5]])

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt}

    def set_lr_scale(self, scale: float) -> None:
        """Every optimiser's learning rate to ``lr * scale``."""
        for opt in self.optimizers().values():
            set_lr(opt, self.cfg.lr * scale)

    def _actor_due(self) -> bool:
        return self.actor_on and self.count % self.cfg.actor_every == self.cfg.actor_every - 1

    def step(self, batch, actor: bool = True) -> torch.Tensor:
        """One update on ``batch`` (the actor's and temperature's too with ``actor``); returns its
        losses, on the device."""
        a, cfg = self.agent, self.cfg
        opts = (self.critic_opt, self.actor_opt, self.alpha_opt) if actor else (self.critic_opt,)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        total, critic_loss, actor_loss, q_mean, cloning = self.losses_fn(
            a, self.hp, self.target_entropy, *batch, actor=actor
        )
        total.backward()
        self.critic_opt.step()
        if actor:
            self.actor_opt.step()
            if cfg.autotune_alpha:
                self.alpha_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._targets[0], self._targets[1], cfg.tau)
            if actor and self._average is not None:
                torch._foreach_lerp_(self._average[0], self._average[1], cfg.actor_average)
        return torch.stack(
            [critic_loss.detach(), actor_loss.detach(), a.log_alpha.detach().exp(), q_mean.detach(), *cloning]
        )

    def _record(self, out: torch.Tensor, actor: bool) -> None:
        self._last = out
        if actor:
            self._last_actor = out

    def __call__(self) -> int:
        actor = self._actor_due()
        if not self.graph_mode:
            self._record(self.step(self.sample(), actor), actor)
            self.count += 1
            return 1
        if actor not in self._graphs:
            return self._capture()
        if not self.sample_in_graph:
            for dst, src in zip(self._inputs, self.sample(), strict=True):
                dst.copy_(src)
        self._graphs[actor].replay()
        self._record(self._outs[actor], actor)
        self.count += 1
        return 1

    def _capture(self) -> int:
        """Warm-up updates, then one graph per kind of update not yet captured (with the actor's
        step unless the critics are burning in; without it where ``actor_every`` > 1 or
        ``actor_starts`` leaves critic-only updates); returns the updates run."""
        if self._inputs is None and not self.sample_in_graph:
            self._inputs = tuple(t.clone() for t in self.sample())
        kinds = (True, False) if self.cfg.actor_every > 1 or self.cfg.actor_starts > 0 else (True,)
        ran = 0
        for actor in [k for k in kinds if k not in self._graphs and (self.actor_on or not k)]:

            def body(actor: bool = actor) -> torch.Tensor:
                batch = self.sample() if self.sample_in_graph else self._inputs
                return self.step(batch, actor)

            graph, out, warm = capture(body, self.device, warmup=self.WARMUP, note=self.note)
            self._record(warm, actor)  # the graph's outputs hold nothing until its first replay
            ran += self.WARMUP
            if graph is None:
                self.graph_mode = False
                self._graphs.clear()
                break
            self._graphs[actor], self._outs[actor] = graph, out
        self.count += ran
        return ran


def lr_scale(final: float, step: int, total_steps: int, elapsed: float, max_seconds: float) -> float:
    """The learning rate's share of ``lr`` at ``step`` (``elapsed`` seconds in): linear from 1 to
    ``final`` over the env steps or the wall-clock budget (0: none), whichever is further along."""
    done = step / total_steps
    if max_seconds > 0:
        done = max(done, elapsed / max_seconds)
    return 1.0 - (1.0 - final) * min(done, 1.0)


class HeldExploration:
    """Temporally-extended epsilon-greedy on some action dimensions (Dabney et al. 2021): each env
    not exploring starts, with probability ``prob`` per step, an excursion of 1 to ``hold`` steps
    in which ``dims`` hold one uniform random value in [-1, 1] (the squashed action's range)."""

    def __init__(self, n_envs: int, dims: list[int], prob: float, hold: int, seed: int, stream: int = 0) -> None:
        self.dims, self.prob, self.hold = np.asarray(dims), prob, hold
        # its own stream (one per group of dimensions explored apart): the other draws stay as they were
        self.rng = np.random.default_rng([seed, 0x6578] + ([stream] if stream else []))
        self.left = np.zeros(n_envs, dtype=np.int64)  # steps left of each env's excursion
        self.value = np.zeros((n_envs, len(dims)), dtype=np.float32)

    def apply(self, ids: np.ndarray, u: np.ndarray) -> bool:
        """Overwrite the explored dimensions of ``u`` (rows: ``ids``) in place; whether any changed."""
        start = (self.left[ids] == 0) & (self.rng.random(len(ids)) < self.prob)
        if start.any():
            new = ids[start]
            self.left[new] = self.rng.integers(1, self.hold + 1, len(new))
            self.value[new] = self.rng.uniform(-1.0, 1.0, (len(new), len(self.dims)))
        on = self.left[ids] > 0
        if not on.any():
            return False
        rows = np.flatnonzero(on)
        u[rows[:, None], self.dims] = self.value[ids[rows]]
        self.left[ids[rows]] -= 1
        return True


def train(cfg: SACConfig, vec, run: Run, device: torch.device, state: dict | None = None) -> tuple[SACAgent, int]:
    """Train on the pool ``vec``; ``state`` (from a checkpoint) resumes. Returns the agent and step."""
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    n, obs_dim, act_dim = vec.num_envs, flatdim(obs_space), act_space.shape[0]
    layout = image_layout(obs_space)
    if layout is not None and cfg.actor_average > 0:
        raise ConfigError(
            f"actor_average ({cfg.actor_average:g}) takes state observations: on {cfg.env_id}'s images the "
            "encoder the actor reads keeps changing under the average"
        )
    agent = build(cfg, obs_dim, act_dim, act_space.low, act_space.high, layout).to(device)
    note = lambda line: run.console.print(  # noqa: E731
        line, style="bold red" if line.startswith("WARNING") else "yellow", markup=False, highlight=False
    )
    goal = is_goal_space(obs_space) and cfg.her_ratio > 0
    reward_fn, reward_on_device, probe = None, True, None
    if goal:
        probe = gym.make(cfg.env_id, **cfg.env_kwargs)  # for its compute_reward (or its declaration)
        reward_fn, reward_on_device = goal_reward(probe, obs_space, device)
    buffer = ReplayBuffer(
        cfg.buffer_size,
        n,
        obs_dim,
        act_dim,
        device,
        goal_slices=goal_slices(obs_space) if goal else None,
        her_ratio=cfg.her_ratio,
        reward_fn=reward_fn,
        layout=layout,
        gamma=cfg.gamma,
        n_step=cfg.n_step_return,
    )
    compile_fn = (lambda f: compiled(f, run.console)) if cfg.compile else None
    graph = cfg.cuda_graph and device.type == "cuda"
    if graph and layout is not None:  # the image replay grows as it fills: no fixed addresses to capture
        graph = False
        note("images: SAC's updates run without CUDA graphs (the image replay is allocated as it fills)")
    if cfg.demos:  # RL from demonstrations: every batch part demos, part online (RLPD)
        demos = load_demos(cfg, obs_space, act_space, agent, device)
        sample = mixed_sample(buffer.sample, demos, cfg.batch_size, cfg.demo_ratio)
        run.console.print(
            f"{len(demos):,} demonstration transitions from {cfg.demos}; {cfg.demo_ratio:.0%} of each batch",
            highlight=False,
        )
    else:
        sample = lambda: buffer.sample(cfg.batch_size)  # noqa: E731
    update = Updater(
        agent,
        cfg,
        -cfg.target_entropy_scale * float(act_dim),
        sample,
        device,
        graph=graph,
        sample_in_graph=reward_on_device,
        compile_fn=compile_fn,
        note=note,
    )
    rng = np.random.default_rng(cfg.seed)
    step = 0
    if agent.base_agent is not None and state is None:  # a fresh residual run: the base's weights
        folder = ckpt.resolve_policy(cfg.base_policy)
        tensors = ckpt.load_tensors(folder, ckpt.MODEL, ckpt.read_sidecar(folder), "cpu")
        ckpt.load_module_state(agent.base_agent, tensors, "model.", str(folder / ckpt.MODEL))
        agent.base_agent.to(device)
        run.console.print(
            f"residual RL on {folder}: corrections up to {cfg.residual_scale:g} of the action's half-range",
            highlight=False,
        )
    if cfg.init_policy and state is None:  # a fresh fine-tuning run: the actor starts as the student
        seed_actor(agent, cfg.init_policy)
        run.console.print(f"fine-tuning {cfg.init_policy}: the actor starts as its student", highlight=False)
    if state is not None:
        if any(k.startswith("model.q1.") for k in state["tensors"]):
            raise ckpt.CheckpointError(
                f"{state['source']}: saved when SAC had two separate critics; its policy still evaluates and "
                "exports, but its optimiser state does not fit the critic ensemble, so training cannot resume "
                "from it (start a new run)"
            )
        step = ckpt.resume(state, agent, update.optimizers(), rng)
        if state.get("replay"):
            try:
                buffer.load_state(state["replay"])
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                replay = Path(state["source"]).parent / ckpt.REPLAY
                raise ckpt.CheckpointError(f"{replay}: the replay buffer does not fit: {exc}") from None
    warmup_rng = np.random.default_rng(int(rng.integers(2**31)))  # uniform actions before learning_starts
    groups = explore_groups(cfg)
    if groups and max(max(g) for g in groups) >= act_dim:
        named, shown = explore_setting(cfg)
        raise ConfigError(
            f"{named} ({shown}): {cfg.env_id}'s action has {act_dim} dimensions, numbered 0 to {act_dim - 1}"
        )
    explores = [HeldExploration(n, g, cfg.explore_prob, cfg.explore_hold, cfg.seed, k) for k, g in enumerate(groups)]

    def policy_step(x: torch.Tensor) -> tuple[torch.Tensor]:
        u, _ = agent.sample(agent.features(agent.norm(x)))
        return (torch.cat([agent.env_action(x, u), u], -1),)

    acting = BatchedAct(policy_step, n, obs_dim, device, graph, note=note)
    half = (act_space.high - act_space.low) / 2
    mid = (act_space.high + act_space.low) / 2
    obs_host = np.zeros((n, obs_dim), dtype=np.float32)  # the observation each env's action was taken at
    u_host = np.zeros((n, act_dim), dtype=np.float32)  # that action, squashed to [-1, 1]

    def act(ids: np.ndarray, x: torch.Tensor | None, rows: torch.Tensor | None) -> np.ndarray:
        """Env actions for ``ids`` (random before ``learning_starts``); keeps their [-1, 1] form."""
        if (step < cfg.learning_starts and not cfg.init_policy) or x is None:
            u = warmup_rng.uniform(-1.0, 1.0, (len(ids), act_dim)).astype(np.float32)
            u_host[ids] = u
            if agent.base_agent is not None and x is not None:  # uniform corrections around the base
                with torch.no_grad():
                    return agent.env_action(x, torch.as_tensor(u, device=device)).cpu().numpy()
            return (mid + half * u).astype(np.float32)
        (both,) = acting(x, rows)
        both = both.cpu().numpy()  # the one device-to-host copy
        u = both[:, act_dim:]
        if any([e.apply(ids, u) for e in explores]):  # some envs explore: their actions again (every group drawn)
            with torch.no_grad():
                both[:, :act_dim] = agent.env_action(x, torch.as_tensor(u, device=device)).cpu().numpy()
        u_host[ids] = u
        return both[:, :act_dim]

    if (agent.base_agent is not None or cfg.init_policy) and state is None:
        # the base's (or student's) own held-out score first, so that keep_best keeps it unless RL beats it
        run.maybe_evaluate(step, agent, last=True)
    stats = EpisodeStats(n)
    obs_np, _ = vec.reset(seed=int(rng.integers(2**31)))
    obs_host[:] = flatten_batch(obs_space, obs_np)
    all_ids = np.arange(n)
    if step >= cfg.learning_starts or agent.base_agent is not None or cfg.init_policy:
        x0 = torch.as_tensor(obs_host, device=device)
        vec.send(act(all_ids, x0, torch.as_tensor(all_ids, device=device)), all_ids)
    else:
        vec.send(act(all_ids, None, None), all_ids)
    min_envs = None if cfg.collect == "sync" else 1
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = step + cfg.log_every
    owed = 0.0
    D = obs_dim
    pending_norm: list[torch.Tensor] = []
    pending_rows = 0
    last = step >= cfg.total_steps
    try:
        while not last and not run.stop_requested:
            t_collect = time.perf_counter()
            b = vec.recv(min_envs)
            ids, keep = b.env_ids, ~b.dropped
            nxt = flatten_batch(obs_space, b.obs)
            real = nxt.copy()  # the true next observation: the final one where an episode ended
            for k, (final_obs, _) in b.finals.items():
                real[k] = flatten_one(obs_space, final_obs)
            flags = np.stack([b.rewards, b.terminated, ids], 1)
            packed = np.concatenate([obs_host[ids], real, nxt, u_host[ids], flags], 1, dtype=np.float32)
            dev = torch.as_tensor(packed, device=device)  # the one host-to-device copy
            o, nx, new = dev[:, :D], dev[:, D : 2 * D], dev[:, 2 * D : 3 * D]
            u, rew, term = dev[:, 3 * D : 3 * D + act_dim], dev[:, -3], dev[:, -2]
            rows = dev[:, -1].long()
            obs_host[ids] = nxt
            if cfg.overlap_updates:  # the workers step while the learner stores and updates
                vec.send(act(ids, new, rows), ids)
            if keep.all():
                buffer.add(ids, o, nx, u, rew, term, b.done, env_ids_dev=rows)
            else:  # a worker died: its envs' last transitions are lost, their episodes closed
                k_dev = torch.as_tensor(keep, device=device)
                buffer.add(ids[keep], o[k_dev], nx[k_dev], u[k_dev], rew[k_dev], term[k_dev], b.done[keep])
                buffer.end_episodes(ids[~keep])
            if cfg.norm_obs and not cfg.init_policy:  # the statistics move once per NORM_ROWS observations
                pending_norm.append(o)
                pending_rows += len(ids)
                if pending_rows >= NORM_ROWS:
                    agent.norm.update(torch.cat(pending_norm))
                    pending_norm, pending_rows = [], 0
            stats.step(b)
            taken = int(keep.sum())
            step += taken
            run.timers["collect"] += time.perf_counter() - t_collect

            if step >= cfg.learning_starts:
                t_update = time.perf_counter()
                if cfg.lr_final_scale < 1.0:
                    update.set_lr_scale(
                        lr_scale(cfg.lr_final_scale, step, cfg.total_steps, run.elapsed(), run.max_seconds)
                    )
                owed += cfg.updates_per_step * taken
                update.actor_on = step >= cfg.actor_starts
                while owed >= 1.0:
                    owed -= update()
                run.timers["update"] += time.perf_counter() - t_update
            if not cfg.overlap_updates:
                vec.send(act(ids, new, rows), ids)

            summary = stats.summary()
            run.progress(step, summary.get("success_rate"))
            last = step >= cfg.total_steps or run.out_of_time()
            if step >= next_log or last:
                next_log = step + cfg.log_every
                row = {
                    **summary,
                    "collect_s": run.timers["collect"],
                    "update_s": run.timers["update"],
                    "workers_restarted": float(getattr(vec, "worker_restarts", 0)),
                }
                if update.losses is not None:
                    critic, actor, alpha, q, distance, kept = update.losses.cpu().tolist()
                    row.update(critic_loss=critic, actor_loss=actor, alpha=alpha, q_mean=q)
                    if update.hp.bc_rows or update.hp.anchored:  # the cloning term's readings
                        row.update(bc_distance=distance, bc_kept=kept)
                if cfg.lr_final_scale < 1.0:
                    row["lr"] = float(update.critic_opt.param_groups[0]["lr"])
                run.log(step, row)
            run.maybe_evaluate(step, agent, last=last)
            if step >= next_ckpt or last:
                next_ckpt += cfg.checkpoint_every
                save(run, cfg, agent, update, rng, step, vec, buffer)
        if run.stop_requested and not last:
            save(run, cfg, agent, update, rng, step, vec, buffer)
    finally:
        if probe is not None:
            probe.close()
    return agent, step


def load_demos(cfg: SACConfig, obs_space, act_space, agent: SACAgent, device: torch.device) -> DemoBuffer:
    """The demos file's transitions on the device; the observation normaliser starts from them."""
    tensors, meta = demos_io.load(cfg.demos)
    demos_io.check_demos(meta, cfg.demos, cfg.env_id, obs_space, act_space, cfg.env_kwargs)
    missing = [k for k in demos_io.TRANSITIONS if k not in tensors]
    if missing:
        raise demos_io.DemosError(
            f"{cfg.demos}: holds no executed transitions ({', '.join(missing)} missing), which RL from "
            "demonstrations needs; record it again with `twin demos`"
        )
    if meta["env_kwargs"] != cfg.env_kwargs:
        raise demos_io.DemosError(
            f"{cfg.demos}: recorded with env kwargs {meta['env_kwargs']}, training uses {cfg.env_kwargs}; "
            "their rewards or dynamics differ (record with --env-kwargs, or --set env_kwargs=...)"
        )
    low, high = act_space.low, act_space.high
    u = ((tensors["taken"].numpy() - (high + low) / 2) / ((high - low) / 2)).clip(-1.0, 1.0)
    demos = DemoBuffer(
        tensors["obs"],
        u,
        tensors["rewards"],
        tensors["next_obs"],
        tensors["terminated"].float(),
        device,
        gamma=cfg.gamma,
        n_step=cfg.n_step_return,
        episode=tensors["episode"],
    )
    if cfg.norm_obs and not cfg.init_policy:  # a student's normaliser stays as it learned it
        agent.norm.update(demos.obs)
    return demos


def save(run: Run, cfg: SACConfig, agent: SACAgent, update: Updater, rng, step: int, vec, buffer: ReplayBuffer) -> None:
    optim = {name: ckpt.optimizer_tensors(name, opt) for name, opt in update.optimizers().items()}
    ckpt.write_checkpoint(run, cfg, vec, step, {"model": agent}, optim, rng, replay=buffer.state())
