"""SAC for continuous actions, with hindsight experience replay on goal-dict envs.

Read top to bottom: networks, the update (``sac_update``, optionally compiled), then ``train``:
act with the tanh-squashed Gaussian actor (one forward pass for all envs), store the vector step
in the device-side replay buffer, and run ``updates_per_step`` gradient updates per env step on
batches sampled (and goal-relabelled) on the device.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from agents.common import checkpoint as ckpt
from agents.common.buffers import ReplayBuffer
from agents.common.config import SACConfig
from agents.common.nets import ActionScale, DeterministicPolicy, Identity, RunningNorm, mlp
from agents.common.runtime import EpisodeStats, Run, compiled, final_infos
from agents.common.spaces import flatdim, flatten_batch, flatten_one, goal_slices, is_goal_space

SQUASH = "tanh"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class MeanHead(nn.Module):
    """The first ``n`` outputs of a network (the actor's mean, for the deterministic policy)."""

    def __init__(self, net: nn.Module, n: int) -> None:
        super().__init__()
        self.net, self.n = net, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[..., : self.n]


class SACAgent(nn.Module):
    def __init__(self, cfg: SACConfig, obs_dim: int, act_dim: int, act_low, act_high) -> None:
        super().__init__()
        w, d = cfg.net_width, cfg.net_depth
        self.act_dim = act_dim
        self.norm = RunningNorm(obs_dim) if cfg.norm_obs else Identity()
        self.actor = mlp(obs_dim, 2 * act_dim, w, d)
        self.q1, self.q2 = mlp(obs_dim + act_dim, 1, w, d), mlp(obs_dim + act_dim, 1, w, d)
        self.q1_target, self.q2_target = mlp(obs_dim + act_dim, 1, w, d), mlp(obs_dim + act_dim, 1, w, d)
        self.q1_target.load_state_dict(self.q1.state_dict())
        self.q2_target.load_state_dict(self.q2.state_dict())
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(cfg.init_alpha))))
        self.scale = ActionScale(act_low, act_high)

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Squashed action in [-1, 1] and its log-probability."""
        mean, log_std = self.actor(x).split(self.act_dim, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        u = mean + log_std.exp() * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        logp = logp - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(-1)  # tanh change of variables
        return a, logp

    def q(self, x, a):
        xa = torch.cat([x, a], -1)
        return self.q1(xa).squeeze(-1), self.q2(xa).squeeze(-1)

    def q_frozen(self, x, a):
        """min(Q1, Q2) through detached critic weights: gradients reach the action, not the critics."""
        xa = torch.cat([x, a], -1)
        q1 = functional_call(self.q1, {k: v.detach() for k, v in self.q1.named_parameters()}, (xa,))
        q2 = functional_call(self.q2, {k: v.detach() for k, v in self.q2.named_parameters()}, (xa,))
        return torch.minimum(q1, q2).squeeze(-1)

    def q_target(self, x, a):
        xa = torch.cat([x, a], -1)
        return torch.minimum(self.q1_target(xa), self.q2_target(xa)).squeeze(-1)

    def policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.norm, MeanHead(self.actor, self.act_dim), self.scale, SQUASH)


def build(cfg: SACConfig, obs_dim: int, act_dim: int, act_low, act_high) -> SACAgent:
    return SACAgent(cfg, obs_dim, act_dim, act_low, act_high)


def sac_losses(agent: SACAgent, gamma: float, target_entropy: float, obs, actions, rewards, next_obs, terminated):
    """Critic, actor and temperature losses of one batch (raw observations; normalised here).

    Each loss reaches only its own parameters (the actor's goes through frozen critic weights),
    so their sum is backpropagated once.
    """
    x, nx = agent.norm(obs), agent.norm(next_obs)
    alpha = agent.log_alpha.exp().detach()
    with torch.no_grad():
        na, nlogp = agent.sample(nx)
        target = rewards + gamma * (1.0 - terminated) * (agent.q_target(nx, na) - alpha * nlogp)
    q1, q2 = agent.q(x, actions)
    critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
    a, logp = agent.sample(x)
    actor_loss = (alpha * logp - agent.q_frozen(x, a)).mean()
    alpha_loss = -(agent.log_alpha * (logp.detach() + target_entropy)).mean()
    return critic_loss + actor_loss + alpha_loss, critic_loss, actor_loss, q1.mean()


class Updater:
    """One SAC gradient update: critics, actor, temperature, target networks."""

    def __init__(self, agent: SACAgent, cfg: SACConfig, target_entropy: float, compile_fn=None) -> None:
        self.agent, self.cfg, self.target_entropy = agent, cfg, target_entropy
        self.critic_opt = torch.optim.Adam([*agent.q1.parameters(), *agent.q2.parameters()], lr=cfg.lr)
        self.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.lr)
        self.alpha_opt = torch.optim.Adam([agent.log_alpha], lr=cfg.lr)
        self.losses = compile_fn(sac_losses) if compile_fn else sac_losses
        self._targets = [(agent.q1, agent.q1_target), (agent.q2, agent.q2_target)]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt}

    def __call__(self, batch) -> torch.Tensor:
        a, cfg = self.agent, self.cfg
        total, critic_loss, actor_loss, q_mean = self.losses(a, cfg.gamma, self.target_entropy, *batch)
        for opt in (self.critic_opt, self.actor_opt, self.alpha_opt):
            opt.zero_grad(set_to_none=True)
        total.backward()
        self.critic_opt.step()
        self.actor_opt.step()
        if cfg.autotune_alpha:
            self.alpha_opt.step()
        with torch.no_grad():
            for net, tgt in self._targets:
                torch._foreach_lerp_(list(tgt.parameters()), list(net.parameters()), cfg.tau)
        return torch.stack([critic_loss.detach(), actor_loss.detach(), a.log_alpha.detach().exp(), q_mean.detach()])


def reward_function(env_id: str, env_kwargs: dict, device: torch.device):
    """The env's own ``compute_reward`` for relabelled goals, from a local instance of the env."""
    env = gym.make(env_id, **env_kwargs)
    fn = env.unwrapped.compute_reward

    def reward(achieved: torch.Tensor, desired: torch.Tensor) -> torch.Tensor:
        r = fn(achieved.cpu().numpy(), desired.cpu().numpy(), {})
        return torch.as_tensor(np.asarray(r, dtype=np.float32), device=device)

    reward.env = env  # keep it alive; closed by the caller
    return reward


def train(cfg: SACConfig, vec, run: Run, device: torch.device, state: dict | None = None) -> tuple[SACAgent, int]:
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    n, obs_dim, act_dim = vec.num_envs, flatdim(obs_space), act_space.shape[0]
    agent = build(cfg, obs_dim, act_dim, act_space.low, act_space.high).to(device)
    compile_fn = None
    if cfg.compile:
        compile_fn = lambda f: compiled(f, run.console)  # noqa: E731
    update = Updater(agent, cfg, target_entropy=-float(act_dim), compile_fn=compile_fn)
    goal = is_goal_space(obs_space) and cfg.her_ratio > 0
    reward_fn = reward_function(cfg.env_id, cfg.env_kwargs, device) if goal else None
    buffer = ReplayBuffer(
        cfg.buffer_size,
        n,
        obs_dim,
        act_dim,
        device,
        goal_slices=goal_slices(obs_space) if goal else None,
        her_ratio=cfg.her_ratio,
        reward_fn=reward_fn,
    )
    rng = np.random.default_rng(cfg.seed)
    step = 0
    if state is not None:
        step = ckpt.resume(state, agent, update.optimizers(), rng)
        if state.get("replay"):
            buffer.load_state(state["replay"])
    act_space.seed(int(rng.integers(2**31)))

    stats = EpisodeStats(n)
    obs_np, _ = vec.reset(seed=int(rng.integers(2**31)))
    obs = torch.as_tensor(flatten_batch(obs_space, obs_np), device=device)
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = step + cfg.log_every
    owed = 0.0
    losses = None
    try:
        while step < cfg.total_steps:
            t_collect = time.perf_counter()
            if step < cfg.learning_starts:
                u_np = np.stack([act_space.sample() for _ in range(n)])
                actions = u_np
                u_np = (u_np - (act_space.high + act_space.low) / 2) / ((act_space.high - act_space.low) / 2)
                u = None  # travels to the device with the step's other data below
            else:
                with torch.no_grad():
                    u, _ = agent.sample(agent.norm(obs))
                    actions = agent.scale(u).cpu().numpy()  # the one device-to-host copy
            next_np, reward, term, trunc, info = vec.step(actions.astype(np.float32))
            stats.step(reward, term | trunc, info)
            real_next = flatten_batch(obs_space, next_np)
            for i, _ in final_infos(info, n):  # the true last observation of finished episodes
                real_next[i] = flatten_one(obs_space, info["final_obs"][i])
            packed = np.concatenate(
                [
                    real_next,
                    flatten_batch(obs_space, next_np),
                    *([u_np.astype(np.float32)] if u is None else []),
                    np.stack([reward, term, term | trunc], 1).astype(np.float32),
                ],
                1,
            )
            dev = torch.as_tensor(packed, device=device)  # the one host-to-device copy
            nxt, new_obs = dev[:, :obs_dim], dev[:, obs_dim : 2 * obs_dim]
            if u is None:
                u = dev[:, 2 * obs_dim : 2 * obs_dim + act_dim]
            buffer.add(obs, nxt, u, dev[:, -3], dev[:, -2], dev[:, -1].bool())
            if cfg.norm_obs:
                agent.norm.update(obs)
            obs = new_obs
            step += n
            run.timers["collect"] += time.perf_counter() - t_collect

            if step >= cfg.learning_starts:
                t_update = time.perf_counter()
                owed += cfg.updates_per_step * n
                while owed >= 1.0:
                    losses = update(buffer.sample(cfg.batch_size))
                    owed -= 1.0
                run.timers["update"] += time.perf_counter() - t_update

            summary = stats.summary()
            run.progress(step, summary.get("success_rate"))
            if step >= next_log or step >= cfg.total_steps:
                next_log = step + cfg.log_every
                row = {**summary, "collect_s": run.timers["collect"], "update_s": run.timers["update"]}
                if losses is not None:
                    critic, actor, alpha, q = losses.cpu().tolist()
                    row.update(critic_loss=critic, actor_loss=actor, alpha=alpha, q_mean=q)
                run.log(step, row)
            if step >= next_ckpt or step >= cfg.total_steps:
                next_ckpt += cfg.checkpoint_every
                save(run, cfg, agent, update, rng, step, vec, buffer)
    finally:
        if reward_fn is not None:
            reward_fn.env.close()
    return agent, step


def save(run: Run, cfg: SACConfig, agent: SACAgent, update: Updater, rng, step: int, vec, buffer: ReplayBuffer) -> None:
    optim = {name: ckpt.optimizer_tensors(name, opt) for name, opt in update.optimizers().items()}
    ckpt.write_checkpoint(run, cfg, vec, step, {"model": agent}, optim, rng, replay=buffer.state())
