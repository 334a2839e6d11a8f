"""PPO for continuous actions, on CPU worker envs with the learner on the GPU when there is one.

Read top to bottom: networks, then ``train``: collect a rollout of ``n_steps`` vector steps into
device storage (one batched forward pass, one device-to-host copy of the actions and one
host-to-device copy of observations, rewards and flags per step), compute GAE, run clipped
policy and value updates, log, checkpoint. Truncated episodes bootstrap from the value of their
final observation; terminated ones do not.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from agents.common import checkpoint as ckpt
from agents.common.config import PPOConfig
from agents.common.nets import ActionScale, DeterministicPolicy, Identity, RunningNorm, mlp
from agents.common.runtime import EpisodeStats, Run, compiled, final_infos
from agents.common.spaces import flatdim, flatten_batch, flatten_one

SQUASH = "clip"


class PPOAgent(nn.Module):
    def __init__(self, cfg: PPOConfig, obs_dim: int, act_dim: int, act_low, act_high) -> None:
        super().__init__()
        self.norm = RunningNorm(obs_dim) if cfg.norm_obs else Identity()
        self.actor = mlp(obs_dim, act_dim, cfg.net_width, cfg.net_depth, nn.Tanh, out_gain=0.01)
        self.critic = mlp(obs_dim, 1, cfg.net_width, cfg.net_depth, nn.Tanh, out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), cfg.init_log_std))
        self.scale = ActionScale(act_low, act_high)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def dist(self, x: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(x), self.log_std.exp().expand(x.shape[0], -1))

    def policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.norm, self.actor, self.scale, SQUASH)


class ActStep:
    """One batched policy step: normalise, sample, log-probability, value, action in env units.

    On CUDA the whole step is captured once as a CUDA graph and replayed, one launch per vector
    step instead of a few dozen small kernels (the learner's per-step cost is then about one
    kernel launch and two copies). Outputs are overwritten by the next call.
    """

    LOG_2PI = float(np.log(2 * np.pi))

    def __init__(self, agent: PPOAgent, n: int, obs_dim: int, device: torch.device, graph: bool) -> None:
        self.agent = agent
        self.obs = torch.zeros((n, obs_dim), device=device)
        self.graph = None
        if graph and device.type == "cuda":
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(3):  # warm up (cuBLAS handles, allocator) before capture
                    self._step()
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.no_grad():
                self.out = self._step()

    def _step(self):
        a = self.agent
        x = a.norm(self.obs)
        mean = a.actor(x)
        eps = torch.randn_like(mean)
        u = mean + a.log_std.exp() * eps
        logp = (-0.5 * eps.square() - a.log_std - 0.5 * self.LOG_2PI).sum(-1)
        return x, u, logp, a.value(x), a.scale(u.clamp(-1.0, 1.0))

    def __call__(self, obs: torch.Tensor):
        self.obs.copy_(obs)
        if self.graph is None:
            with torch.no_grad():
                return self._step()
        self.graph.replay()
        return self.out


def build(cfg: PPOConfig, obs_dim: int, act_dim: int, act_low, act_high) -> PPOAgent:
    return PPOAgent(cfg, obs_dim, act_dim, act_low, act_high)


def ppo_loss(agent: PPOAgent, cfg: PPOConfig, obs, actions, old_logp, adv, returns):
    dist = agent.dist(obs)
    logp = dist.log_prob(actions).sum(-1)
    ratio = (logp - old_logp).exp()
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
    v_loss = 0.5 * (agent.value(obs) - returns).square().mean()
    entropy = dist.entropy().sum(-1).mean()
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
    approx_kl = ((ratio - 1) - (logp - old_logp)).mean()
    return loss, pg_loss, v_loss, entropy, approx_kl


def train(cfg: PPOConfig, vec, run: Run, device: torch.device, state: dict | None = None) -> tuple[PPOAgent, int]:
    """Train on the vector env ``vec``; ``state`` (from a checkpoint) resumes. Returns the agent and step."""
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    n, obs_dim, act_dim = vec.num_envs, flatdim(obs_space), act_space.shape[0]
    agent = build(cfg, obs_dim, act_dim, act_space.low, act_space.high).to(device)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    rng = np.random.default_rng(cfg.seed)
    step = ckpt.resume(state, agent, {"adam": opt}, rng) if state is not None else 0

    loss_fn = ppo_loss
    if cfg.compile:
        loss_fn = compiled(ppo_loss, run.console)

    # Rollout storage, on the device.
    T = cfg.n_steps
    buf_obs = torch.zeros((T, n, obs_dim), device=device)
    buf_raw = torch.zeros((T, n, obs_dim), device=device)
    buf_act = torch.zeros((T, n, act_dim), device=device)
    buf_logp = torch.zeros((T, n), device=device)
    buf_rew = torch.zeros((T, n), device=device)
    buf_done = torch.zeros((T, n), device=device)
    buf_val = torch.zeros((T, n), device=device)

    stats = EpisodeStats(n)
    obs_np, _ = vec.reset(seed=int(rng.integers(2**31)))
    obs = torch.as_tensor(flatten_batch(obs_space, obs_np), device=device)
    if cfg.norm_obs:
        agent.norm.update(obs)
    act = ActStep(agent, n, obs_dim, device, graph=cfg.cuda_graph)
    overlap = hasattr(vec, "step_async")  # worker processes: overlap book-keeping with their physics

    def finish(t, dev, reward, term, trunc, info) -> None:
        """Rewards (bootstrapped on truncation), episode ends, statistics of vector step ``t``."""
        stats.step(reward, term | trunc, info)
        r, term_t, trunc_t = dev[:, -3] * cfg.reward_scale, dev[:, -2], dev[:, -1]
        if np.any(trunc & ~term):  # bootstrap truncated (not terminated) episodes from their final obs
            with torch.no_grad():
                r = r + cfg.gamma * trunc_t * (1.0 - term_t) * agent.value(agent.norm(dev[:, obs_dim : 2 * obs_dim]))
        buf_rew[t], buf_done[t] = r, torch.maximum(term_t, trunc_t)

    iters = max(1, -(-(cfg.total_steps - step) // (T * n)))
    total_iters = max(1, -(-cfg.total_steps // (T * n)))
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = step + cfg.log_every
    done_iters = step // (T * n)
    for _ in range(iters):
        if cfg.anneal_lr:
            opt.param_groups[0]["lr"] = cfg.lr * max(1.0 - done_iters / total_iters, 0.0)
        t_collect = time.perf_counter()
        pending = None
        for t in range(T):
            x, u, logp, value, action = act(obs)
            buf_raw[t], buf_obs[t], buf_act[t], buf_logp[t], buf_val[t] = obs, x, u, logp, value
            actions = action.cpu().numpy()  # the one device-to-host copy
            if overlap:
                vec.step_async(actions)
            if pending is not None:  # book-keep the previous step while the workers simulate this one
                finish(*pending)
            obs_np, reward, term, trunc, info = vec.step_wait() if overlap else vec.step(actions)
            # One host-to-device copy: next obs, final obs of finished episodes, reward, flags.
            final = np.zeros((n, obs_dim), dtype=np.float32)
            for i, _ in final_infos(info, n):
                final[i] = flatten_one(obs_space, info["final_obs"][i])
            packed = np.concatenate(
                [flatten_batch(obs_space, obs_np), final, np.stack([reward, term, trunc], 1).astype(np.float32)], 1
            )
            dev = torch.as_tensor(packed, device=device)
            obs = dev[:, :obs_dim]
            pending = (t, dev, reward, term, trunc, info)
        finish(*pending)
        if cfg.norm_obs:  # statistics move once per rollout: a rollout is normalised consistently
            agent.norm.update(buf_raw.reshape(-1, obs_dim))
        step += T * n
        run.timers["collect"] += time.perf_counter() - t_collect

        t_update = time.perf_counter()
        with torch.no_grad():  # GAE
            next_val = agent.value(agent.norm(obs))
            adv = torch.zeros_like(buf_rew)
            last = torch.zeros(n, device=device)
            for t in reversed(range(T)):
                nv = next_val if t == T - 1 else buf_val[t + 1]
                nonterminal = 1.0 - buf_done[t]
                delta = buf_rew[t] + cfg.gamma * nv * nonterminal - buf_val[t]
                last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
                adv[t] = last
            returns = adv + buf_val
        b_obs, b_act, b_logp = buf_obs.reshape(-1, obs_dim), buf_act.reshape(-1, act_dim), buf_logp.reshape(-1)
        b_adv, b_ret = adv.reshape(-1), returns.reshape(-1)
        batch = T * n
        mb = batch // cfg.n_minibatches
        for _epoch in range(cfg.update_epochs):
            perm = torch.randperm(batch, device=device)
            for k in range(cfg.n_minibatches):
                idx = perm[k * mb : (k + 1) * mb]
                loss, pg, vl, ent, kl = loss_fn(agent, cfg, b_obs[idx], b_act[idx], b_logp[idx], b_adv[idx], b_ret[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                opt.step()
        losses = torch.stack([pg.detach(), vl.detach(), ent.detach(), kl.detach()]).cpu().tolist()
        run.timers["update"] += time.perf_counter() - t_update
        done_iters += 1

        summary = stats.summary()
        run.progress(step, summary.get("success_rate"))
        if step >= next_log or done_iters == total_iters:
            next_log = step + cfg.log_every
            wall = run.timers["collect"] + run.timers["update"]
            run.log(
                step,
                {
                    **summary,
                    "policy_loss": losses[0],
                    "value_loss": losses[1],
                    "entropy": losses[2],
                    "approx_kl": losses[3],
                    "lr": opt.param_groups[0]["lr"],
                    "collect_s": run.timers["collect"],
                    "update_s": run.timers["update"],
                    "update_fraction": run.timers["update"] / max(wall, 1e-9),
                    "env_steps_per_s_collect": (step - run.start) / max(run.timers["collect"], 1e-9),
                },
            )
        if step >= next_ckpt or done_iters >= total_iters:
            next_ckpt += cfg.checkpoint_every
            save(run, cfg, agent, opt, rng, step, vec)
    return agent, step


def save(run: Run, cfg: PPOConfig, agent: PPOAgent, opt, rng, step: int, vec) -> None:
    opt_t, opt_meta = ckpt.optimizer_tensors("adam", opt)
    ckpt.write_checkpoint(run, cfg, vec, step, {"model": agent}, {"adam": (opt_t, opt_meta)}, rng)
