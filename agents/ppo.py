"""PPO for continuous actions, on CPU worker envs with the learner on the GPU when there is one.

Read top to bottom: networks, the loss, then ``train``: collect a rollout of ``n_steps`` steps of
every env into device storage, compute GAE, run clipped policy and value updates, log,
checkpoint. Collection is asynchronous: the learner acts for the envs of whichever workers have
finished (one batched forward pass, one device-to-host copy of their actions and one
host-to-device copy of their observations, rewards and flags) and sends them off again; each
env stops at its ``n_steps``-th step, and the rollout ends when the last one gets there.
Truncated episodes bootstrap from the value of their final observation; terminated ones do not.
On CUDA, acting and the whole update (GAE and every minibatch step) replay as CUDA graphs.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from agents.common import checkpoint as ckpt
from agents.common.config import PPOConfig
from agents.common.graphs import BatchedAct, capture, set_lr
from agents.common.nets import ActionScale, DeterministicPolicy, Identity, RunningNorm, mlp
from agents.common.runtime import EpisodeStats, Run, compiled
from agents.common.spaces import ImageLayout, flatdim, flatten_batch, flatten_one, image_layout
from agents.common.vision import PixelNorm, VisionActor

SQUASH = "clip"


class PPOAgent(nn.Module):
    """A Gaussian policy and a value function, MLPs on the normalised state; on images (``layout``)
    each has its own convolutional encoder per camera (``agents.common.vision``)."""

    def __init__(
        self, cfg: PPOConfig, obs_dim: int, act_dim: int, act_low, act_high, layout: ImageLayout | None = None
    ) -> None:
        super().__init__()
        if layout is None:
            self.norm = RunningNorm(obs_dim, min_std=cfg.norm_floor) if cfg.norm_obs else Identity()
            self.actor = mlp(obs_dim, act_dim, cfg.net_width, cfg.net_depth, nn.Tanh, out_gain=0.01)
            self.critic = mlp(obs_dim, 1, cfg.net_width, cfg.net_depth, nn.Tanh, out_gain=1.0)
        else:
            self.norm = PixelNorm(layout, min_std=cfg.norm_floor if cfg.norm_obs else 0.0)
            self.actor = VisionActor(layout, act_dim, cfg.net_width, cfg.net_depth, out_gain=0.01)
            self.critic = VisionActor(layout, 1, cfg.net_width, cfg.net_depth)
        self.log_std = nn.Parameter(torch.full((act_dim,), cfg.init_log_std))
        self.scale = ActionScale(act_low, act_high)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def dist(self, x: torch.Tensor) -> torch.distributions.Normal:
        # no argument validation: it reads the scale back to the host, which a CUDA graph cannot capture
        return torch.distributions.Normal(self.actor(x), self.log_std.exp().expand(x.shape[0], -1), validate_args=False)

    def policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.norm, self.actor, self.scale, SQUASH)


def build(cfg: PPOConfig, obs_dim: int, act_dim: int, act_low, act_high, layout: ImageLayout | None = None) -> PPOAgent:
    return PPOAgent(cfg, obs_dim, act_dim, act_low, act_high, layout)


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


class Rollout:
    """Rollout storage on the device: ``n_steps`` steps of each of ``n`` envs (envs fill it at their own pace)."""

    def __init__(self, T: int, n: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        self.T, self.n = T, n
        self.obs = torch.zeros((T, n, obs_dim), device=device)  # normalised, as the policy saw them
        self.raw = torch.zeros((T, n, obs_dim), device=device)
        self.act = torch.zeros((T, n, act_dim), device=device)
        self.logp = torch.zeros((T, n), device=device)
        self.rew = torch.zeros((T, n), device=device)
        self.done = torch.zeros((T, n), device=device)
        self.val = torch.zeros((T, n), device=device)
        self.last_obs = torch.zeros((n, obs_dim), device=device)  # each env's observation after its T-th step


class Updater:
    """GAE over a rollout, then ``update_epochs`` passes of clipped policy and value steps.

    With ``graph`` (CUDA) the first call runs eagerly as the warm-up and captures the whole
    update (GAE and every minibatch step) as one CUDA graph; later calls replay it. The
    optimiser is then capturable and takes its learning rate as a tensor, so annealing it needs
    no new capture. Each call returns (policy loss, value loss, entropy, approx KL) of the last
    minibatch, on the device.
    """

    def __init__(
        self, agent: PPOAgent, cfg: PPOConfig, rollout: Rollout, device: torch.device, graph: bool, loss_fn, note=None
    ) -> None:
        self.agent, self.cfg, self.rollout, self.device, self.note = agent, cfg, rollout, device, note
        self.graph_mode = graph and device.type == "cuda"
        if self.graph_mode:  # capturable, with a tensor learning rate; else the fused kernels
            kw = {"capturable": True, "foreach": True, "lr": torch.tensor(cfg.lr, device=device)}
        else:
            kw = {"fused": True}
        self.opt = torch.optim.Adam(agent.parameters(), **{"lr": cfg.lr, "eps": 1e-5, **kw})
        self.loss_fn = loss_fn
        self._graph = None

    def set_lr(self, lr: float) -> None:
        set_lr(self.opt, lr)

    def __call__(self) -> torch.Tensor:
        if self._graph is not None:
            self._graph.replay()
            return self._out
        if not self.graph_mode:
            return self.step()
        graph, out, warm = capture(self.step, self.device, warmup=1, note=self.note)
        self._graph, self._out = graph, out
        self.graph_mode = graph is not None
        return warm

    def step(self) -> torch.Tensor:
        agent, cfg, ro, device = self.agent, self.cfg, self.rollout, self.device
        T, n = ro.T, ro.n
        with torch.no_grad():
            next_val = agent.value(agent.norm(ro.last_obs))
            adv = torch.zeros_like(ro.rew)
            last = torch.zeros(n, device=device)
            for t in reversed(range(T)):
                nv = next_val if t == T - 1 else ro.val[t + 1]
                nonterminal = 1.0 - ro.done[t]
                delta = ro.rew[t] + cfg.gamma * nv * nonterminal - ro.val[t]
                last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
                adv[t] = last
            returns = adv + ro.val
        b_obs, b_act, b_logp = ro.obs.reshape(T * n, -1), ro.act.reshape(T * n, -1), ro.logp.reshape(-1)
        b_adv, b_ret = adv.reshape(-1), returns.reshape(-1)
        batch = T * n
        mb = batch // cfg.n_minibatches
        for _epoch in range(cfg.update_epochs):
            perm = torch.argsort(torch.rand(batch, device=device))  # a random permutation, capturable
            for k in range(cfg.n_minibatches):
                idx = perm[k * mb : (k + 1) * mb]
                loss, pg, vl, ent, kl = self.loss_fn(
                    agent, cfg, b_obs[idx], b_act[idx], b_logp[idx], b_adv[idx], b_ret[idx]
                )
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                self.opt.step()
        return torch.stack([pg.detach(), vl.detach(), ent.detach(), kl.detach()])


LOG_2PI = float(np.log(2 * np.pi))


def train(cfg: PPOConfig, vec, run: Run, device: torch.device, state: dict | None = None) -> tuple[PPOAgent, int]:
    """Train on the pool ``vec``; ``state`` (from a checkpoint) resumes. Returns the agent and step."""
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    n, obs_dim, act_dim = vec.num_envs, flatdim(obs_space), act_space.shape[0]
    agent = build(cfg, obs_dim, act_dim, act_space.low, act_space.high, image_layout(obs_space)).to(device)
    graph = cfg.cuda_graph and device.type == "cuda"
    note = lambda line: run.console.print(  # noqa: E731
        line, style="bold red" if line.startswith("WARNING") else "yellow", markup=False, highlight=False
    )
    loss_fn = compiled(ppo_loss, run.console) if cfg.compile and not graph else ppo_loss
    T = cfg.n_steps
    ro = Rollout(T, n, obs_dim, act_dim, device)
    update = Updater(agent, cfg, ro, device, graph, loss_fn, note)
    opt = update.opt
    rng = np.random.default_rng(cfg.seed)
    step = ckpt.resume(state, agent, {"adam": opt}, rng) if state is not None else 0

    def act_fn(obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = agent.norm(obs)
        mean = agent.actor(x)
        eps = torch.randn_like(mean)
        u = mean + agent.log_std.exp() * eps
        logp = (-0.5 * eps.square() - agent.log_std - 0.5 * LOG_2PI).sum(-1)
        return x, u, logp, agent.value(x), agent.scale(u.clamp(-1.0, 1.0))

    stats = EpisodeStats(n)
    obs_np, _ = vec.reset(seed=int(rng.integers(2**31)))
    obs_host = flatten_batch(obs_space, obs_np)
    if cfg.norm_obs:
        agent.norm.update(torch.as_tensor(obs_host, device=device))
    acting = BatchedAct(act_fn, n, obs_dim, device, graph, note=note)
    min_envs = None if cfg.collect == "sync" else 1
    t_env = np.zeros(n, dtype=np.int64)

    def start(ids: np.ndarray, obs: torch.Tensor, rows: torch.Tensor, t_rows: torch.Tensor) -> None:
        """Act for envs ``ids`` at their step ``t_rows``, store what acting gives, send them off."""
        x, u, logp, value, action = acting(obs, rows)
        ro.raw[t_rows, rows], ro.obs[t_rows, rows], ro.act[t_rows, rows] = obs, x, u
        ro.logp[t_rows, rows], ro.val[t_rows, rows] = logp, value
        vec.send(action.cpu().numpy(), ids)  # the one device-to-host copy

    iters = max(1, -(-(cfg.total_steps - step) // (T * n)))
    total_iters = max(1, -(-cfg.total_steps // (T * n)))
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = step + cfg.log_every
    done_iters = step // (T * n)
    all_ids = np.arange(n)
    for _ in range(iters):
        lr = cfg.lr * max(1.0 - done_iters / total_iters, 0.0) if cfg.anneal_lr else cfg.lr
        update.set_lr(lr)
        t_collect = time.perf_counter()
        t_env[:] = 0
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        rows_all = torch.arange(n, device=device)
        start(all_ids, torch.as_tensor(obs_host, device=device), rows_all, zeros)
        in_flight = n
        while in_flight and not run.stop_requested:
            b = vec.recv(min_envs)
            ids, t = b.env_ids, t_env[b.env_ids]
            nxt = flatten_batch(obs_space, b.obs)
            final = np.zeros_like(nxt)
            for k, (final_obs, _) in b.finals.items():
                final[k] = flatten_one(obs_space, final_obs)
            flags = np.stack([b.rewards, b.terminated, b.truncated, ids, t], 1)
            dev = torch.as_tensor(np.concatenate([nxt, final, flags], 1, dtype=np.float32), device=device)
            new, fin = dev[:, :obs_dim], dev[:, obs_dim : 2 * obs_dim]
            r, term_t, trunc_t = dev[:, -5] * cfg.reward_scale, dev[:, -4], dev[:, -3]
            rows, t_rows = dev[:, -2].long(), dev[:, -1].long()
            more = t + 1 < T  # the same for every env of a slot: they step together
            if more.all():  # send the workers off first; book-keep while they simulate
                start(ids, new, rows, t_rows + 1)
            else:
                m = torch.as_tensor(more, device=device)
                if more.any():
                    start(ids[more], new[m], rows[m], t_rows[m] + 1)
                ro.last_obs[rows[~m]] = new[~m]
                in_flight -= int((~more).sum())
            obs_host[ids] = nxt
            if np.any(b.truncated & ~b.terminated):  # bootstrap truncated episodes from their final obs
                with torch.no_grad():
                    r = r + cfg.gamma * trunc_t * (1.0 - term_t) * agent.value(agent.norm(fin))
            ro.rew[t_rows, rows], ro.done[t_rows, rows] = r, torch.maximum(term_t, trunc_t)
            t_env[ids] += 1
            stats.step(b)
        if run.stop_requested:  # the partial rollout is dropped; the last update's weights are saved
            save(run, cfg, agent, opt, rng, step, vec)
            break
        if cfg.norm_obs:  # statistics move once per rollout: a rollout is normalised consistently
            agent.norm.update(ro.raw.reshape(-1, obs_dim))
        step += T * n
        run.timers["collect"] += time.perf_counter() - t_collect

        t_update = time.perf_counter()
        losses_t = update()
        losses = losses_t.cpu().tolist()
        run.timers["update"] += time.perf_counter() - t_update
        done_iters += 1

        summary = stats.summary()
        run.progress(step, summary.get("success_rate"))
        last = done_iters >= total_iters or run.out_of_time()
        if step >= next_log or last:
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
                    "lr": lr,
                    "collect_s": run.timers["collect"],
                    "update_s": run.timers["update"],
                    "update_fraction": run.timers["update"] / max(wall, 1e-9),
                    "env_steps_per_s_collect": (step - run.start) / max(run.timers["collect"], 1e-9),
                    "workers_restarted": float(getattr(vec, "worker_restarts", 0)),
                },
            )
        run.maybe_evaluate(step, agent, last=last)
        if step >= next_ckpt or last:
            next_ckpt += cfg.checkpoint_every
            save(run, cfg, agent, opt, rng, step, vec)
        if last:
            break
    return agent, step


def save(run: Run, cfg: PPOConfig, agent: PPOAgent, opt, rng, step: int, vec) -> None:
    opt_t, opt_meta = ckpt.optimizer_tensors("adam", opt)
    ckpt.write_checkpoint(run, cfg, vec, step, {"model": agent}, {"adam": (opt_t, opt_meta)}, rng)
