"""DAgger (dataset aggregation, Ross et al. 2011): the student drives, the expert labels.

Read top to bottom. The student is BC's network (observation normaliser, MLP, tanh to the
action bounds). Each env in the worker pool is wrapped in ``ExpertLabels``: beside the twin, the
scripted expert (a function of the twin's state) labels every observation the env returns. The
run goes in rounds of ``round_steps`` env steps:

1. roll out: for each env that is ready, act with the expert's label with chance ``beta`` (per
   env and step), else with the student's action; keep every (observation, label) pair, so the
   aggregate holds the states the student itself reaches, labelled with what the expert would do
   there;
2. fit: ``updates_per_round`` Adam steps on the squared error between the student's and the
   expert's actions (both in [-1, 1]) over random minibatches of the whole aggregate, on every
   core (the env workers wait through it) unless ``learner_threads`` is set;
3. ``beta`` is multiplied by ``beta_decay``.

Recorded demos (``--demos``) seed the aggregate. The evaluations during training, the kept best
policy, checkpoints (the aggregate travels with them) and resume are the runs' common machinery.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from agents import bc
from agents.collect import demos as demos_io
from agents.common import checkpoint as ckpt
from agents.common.config import DAggerConfig
from agents.common.nets import ActionScale
from agents.common.runtime import EpisodeStats, Run, usable_cores
from agents.common.spaces import ImageLayout, flatdim, flatten_batch, image_layout
from agents.common.vision import PixelStore

build = bc.build  # the same student network as behaviour cloning: exports and evaluates alike


class Aggregate:
    """The labelled states on the device, a ring of ``capacity`` (observation, label) pairs; image
    observations keep their pixels as uint8 (``layout``)."""

    def __init__(
        self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, layout: ImageLayout | None = None
    ) -> None:
        self.store = PixelStore(capacity, layout, device) if layout is not None else None
        self.obs = torch.zeros((capacity, obs_dim), device=device) if layout is None else None
        self.act = torch.zeros((capacity, act_dim), device=device)
        self.capacity, self.size, self.next = capacity, 0, 0

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Flat float32 observations of the slots ``idx``."""
        return self.obs[idx] if self.store is None else self.store.get(idx)

    def add(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        n = len(obs)
        if n == 0:
            return
        if n >= self.capacity:
            obs, act, n = obs[-self.capacity :], act[-self.capacity :], self.capacity
        idx = (torch.arange(n, device=self.act.device) + self.next) % self.capacity
        if self.store is None:
            self.obs[idx] = obs
        else:
            self.store.put(idx, obs)
        self.act[idx] = act
        self.next = (self.next + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.size, (batch,), device=self.act.device)
        return (self.obs[idx] if self.store is None else self.store.parts(idx)), self.act[idx]

    def _order(self) -> torch.Tensor:
        return (torch.arange(self.size, device=self.act.device) + (self.next - self.size)) % self.capacity

    def state(self) -> dict[str, torch.Tensor]:
        order = self._order()
        if self.store is None:
            return {"aggregate.obs": self.obs[order], "aggregate.act": self.act[order]}
        st = self.store
        return {"aggregate.pixels": st.pix[order], "aggregate.vector": st.vec[order], "aggregate.act": self.act[order]}

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        self.size, self.next = 0, 0
        device = self.act.device
        act = st["aggregate.act"].to(device)
        if self.store is None:
            self.add(st["aggregate.obs"].to(device), act)
            return
        pix, vec = st["aggregate.pixels"].to(device), st["aggregate.vector"].to(device)
        n = min(len(act), self.capacity)
        if (
            pix.shape[1:] != self.store.pix.shape[1:]
            or vec.shape[1:] != self.store.vec.shape[1:]
            or len(pix) != len(act)
        ):
            raise ValueError(f"pixels {tuple(pix.shape)} and vector {tuple(vec.shape)} do not fit this observation")
        self.store.reserve(n)
        self.store.pix[:n], self.store.vec[:n], self.act[:n] = pix[-n:], vec[-n:], act[-n:]
        self.size, self.next = n, n % self.capacity

    def all_obs(self, image_limit: int = 20_000) -> torch.Tensor:
        """The observations, flat float32 (for the normaliser); of images, the newest ``image_limit``."""
        order = self._order()
        return self.rows(order if self.store is None else order[-image_limit:])


def update(agent: bc.BCAgent, opt: torch.optim.Optimizer, data: Aggregate, batch_size: int) -> torch.Tensor:
    """One Adam step of the student towards the expert's labels on a random minibatch of the
    aggregate; the minibatch's loss."""
    batch, target = data.sample(batch_size)
    loss = (torch.tanh(agent.train_actions(batch)) - target.clamp(-1.0, 1.0)).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train(cfg: DAggerConfig, vec, run: Run, device: torch.device, state: dict | None = None) -> tuple[bc.BCAgent, int]:
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    n, obs_dim, act_dim = vec.num_envs, flatdim(obs_space), act_space.shape[0]
    layout = image_layout(obs_space)
    agent = build(cfg, obs_dim, act_dim, act_space.low, act_space.high, layout).to(device)
    scale = ActionScale(act_space.low, act_space.high).to(device)
    data = Aggregate(cfg.buffer_size, obs_dim, act_dim, device, layout)
    if cfg.demos:
        tensors, meta = demos_io.load(cfg.demos)
        demos_io.check_demos(meta, cfg.demos, cfg.env_id, obs_space, act_space, cfg.env_kwargs)
        data.add(tensors["obs"].to(device), (tensors["actions"].to(device) - scale.center) / scale.half_range)
    opt = torch.optim.AdamW(agent.actor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    if state is not None:
        step = ckpt.resume(state, agent, {"adamw": opt}, rng)
        if state.get("replay"):
            try:
                data.load_state(state["replay"])
            except (KeyError, RuntimeError, TypeError, ValueError) as exc:
                raise ckpt.CheckpointError(
                    f"{state['source']}: the aggregate of labelled states does not fit: {exc}"
                ) from None

    # the env workers wait through each fit, so unless learner_threads says otherwise the fit takes
    # every core (docs/training.md has the timings) and acting goes back to the cores they leave free
    fit_threads = cfg.learner_threads or usable_cores()

    def fit(updates: int) -> float:
        loss = torch.zeros((), device=device)
        act_threads = torch.get_num_threads()
        torch.set_num_threads(fit_threads)
        try:
            for _ in range(updates):
                loss = update(agent, opt, data, cfg.batch_size)
        finally:
            torch.set_num_threads(act_threads)
        return float(loss.detach())

    def student(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(obs, device=device)
            return agent.policy()(x).cpu().numpy()

    stats = EpisodeStats(n)
    obs_np, info = vec.reset(seed=int(rng.integers(2**31)))
    obs_host = flatten_batch(obs_space, obs_np)
    labels = np.stack([np.asarray(lab, dtype=np.float32) for lab in info["expert_action"]])
    have = np.ones(n, dtype=bool)
    rounds = step // cfg.round_steps
    beta = cfg.beta0 * cfg.beta_decay**rounds
    if cfg.norm_obs and data.size == 0:
        agent.norm.update(torch.as_tensor(obs_host, device=device))
    elif cfg.norm_obs and state is None:
        agent.norm.update(data.all_obs())

    def act(ids: np.ndarray) -> np.ndarray:
        """Each env's action: the expert's with chance beta (or where the student has no weights
        to speak of yet), else the student's."""
        chosen = labels[ids].copy()
        use_student = (rng.uniform(size=len(ids)) >= beta) & have[ids]
        if use_student.any() and data.size > 0:
            chosen[use_student] = student(obs_host[ids[use_student]])
        return chosen

    all_ids = np.arange(n)
    vec.send(act(all_ids), all_ids)
    min_envs = None if cfg.collect == "sync" else 1
    next_round = (rounds + 1) * cfg.round_steps
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = step + cfg.log_every
    pending_obs: list[np.ndarray] = []
    pending_act: list[np.ndarray] = []
    loss = float("nan")
    last = step >= cfg.total_steps
    while not last and not run.stop_requested:
        t_collect = time.perf_counter()
        b = vec.recv(min_envs)
        ids = b.env_ids
        obs_host[ids] = flatten_batch(obs_space, b.obs)
        for k, i in enumerate(ids):
            lab = b.infos[k].get("expert_action")
            have[i] = lab is not None
            if lab is not None:
                labels[i] = lab
        keep = have[ids]
        pending_obs.append(obs_host[ids[keep]].copy())
        pending_act.append(labels[ids[keep]].copy())
        vec.send(act(ids), ids)
        stats.step(b)
        step += int((~b.dropped).sum())
        run.timers["collect"] += time.perf_counter() - t_collect
        last = step >= cfg.total_steps or run.out_of_time()
        if step >= next_round or last:
            t_update = time.perf_counter()
            obs_t = torch.as_tensor(np.concatenate(pending_obs), device=device)
            act_t = torch.as_tensor(np.concatenate(pending_act), device=device)
            data.add(obs_t, (act_t - scale.center) / scale.half_range)
            if cfg.norm_obs:
                agent.norm.update(obs_t)
            pending_obs, pending_act = [], []
            loss = fit(cfg.updates_per_round)
            rounds += 1
            next_round = (rounds + 1) * cfg.round_steps
            beta = cfg.beta0 * cfg.beta_decay**rounds
            run.timers["update"] += time.perf_counter() - t_update
        summary = stats.summary()
        run.progress(step, summary.get("success_rate"))
        if step >= next_log or last:
            next_log = step + cfg.log_every
            row = {**summary, "loss": loss, "beta": beta, "labelled": float(data.size), "rounds": float(rounds)}
            row |= {"collect_s": run.timers["collect"], "update_s": run.timers["update"]}
            run.log(step, row)
        run.maybe_evaluate(step, agent, last=last)
        if step >= next_ckpt or last:
            next_ckpt += cfg.checkpoint_every
            save(run, cfg, agent, opt, rng, step, vec, data)
    if run.stop_requested and not last:
        save(run, cfg, agent, opt, rng, step, vec, data)
    return agent, step


def save(run: Run, cfg: DAggerConfig, agent, opt, rng, step: int, vec, data: Aggregate) -> None:
    ckpt.write_checkpoint(
        run, cfg, vec, step, {"model": agent}, {"adamw": ckpt.optimizer_tensors("adamw", opt)}, rng, replay=data.state()
    )
