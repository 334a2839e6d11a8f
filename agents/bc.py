"""Behaviour cloning: fit a deterministic policy to expert demonstrations.

Read top to bottom: load the demos onto the device, split off whole episodes for validation,
fix the observation normaliser to the demos' statistics, then minimise the squared error
between the policy's and the expert's actions (both mapped to [-1, 1]) with Adam.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from agents.collect import demos as demos_io
from agents.common import checkpoint as ckpt
from agents.common.config import BCConfig
from agents.common.nets import ActionScale, DeterministicPolicy, Identity, RunningNorm, mlp
from agents.common.runtime import Run, compiled
from agents.common.spaces import ImageLayout, flatdim, image_layout
from agents.common.vision import PixelNorm, PixelStore, VisionActor, training_images

SQUASH = "tanh"


class BCAgent(nn.Module):
    """The student: a normaliser and an MLP on state vectors; on images (``layout``), a normaliser
    that maps pixels to [-1, 1] and a convolutional encoder per camera before the MLP."""

    def __init__(
        self, cfg: BCConfig, obs_dim: int, act_dim: int, act_low, act_high, layout: ImageLayout | None = None
    ) -> None:
        super().__init__()
        self.layout = layout
        if layout is None:
            self.norm = RunningNorm(obs_dim, min_std=cfg.norm_floor) if cfg.norm_obs else Identity()
            self.actor = mlp(obs_dim, act_dim, cfg.net_width, cfg.net_depth)
        else:
            self.norm = PixelNorm(layout, min_std=cfg.norm_floor if cfg.norm_obs else 0.0)
            self.actor = VisionActor(layout, act_dim, cfg.net_width, cfg.net_depth)
        self.scale = ActionScale(act_low, act_high)
        self.shift = getattr(cfg, "image_shift", 0)

    def train_actions(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], augment: bool = True):
        """The actor's pre-squash output on a training batch: flat observations, or for images the
        stored (uint8 pixels, features) parts (``PixelStore.parts``), each image randomly shifted
        (DrQ) unless ``augment`` is off."""
        if self.layout is None:
            return self.actor(self.norm(batch))
        pixels, vector = batch
        images = training_images(self.layout, pixels, self.shift if augment else 0)
        return self.actor.fuse(images, self.norm.vector(vector))

    def policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.norm, self.actor, self.scale, SQUASH)


def build(cfg: BCConfig, obs_dim: int, act_dim: int, act_low, act_high, layout: ImageLayout | None = None) -> BCAgent:
    return BCAgent(cfg, obs_dim, act_dim, act_low, act_high, layout)


def train(cfg: BCConfig, vec, run: Run, device: torch.device, state: dict | None = None) -> tuple[BCAgent, int]:
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    obs_dim, act_dim = flatdim(obs_space), act_space.shape[0]
    if not cfg.demos:
        raise demos_io.DemosError("--algo bc needs demonstrations: record them with `twin demos` and pass --demos FILE")
    tensors, meta = demos_io.load(cfg.demos)
    demos_io.check_demos(meta, cfg.demos, cfg.env_id, obs_space, act_space, cfg.env_kwargs)
    obs = tensors["obs"].to(device)
    scale = ActionScale(act_space.low, act_space.high).to(device)
    target = ((tensors["actions"].to(device) - scale.center) / scale.half_range).clamp(-1.0, 1.0)
    episode = tensors["episode"].to(device)

    rng = np.random.default_rng(cfg.seed)
    n_eps = int(episode.max()) + 1
    n_val = round(n_eps * cfg.val_fraction) if n_eps > 1 else 0
    val_eps = torch.as_tensor(rng.choice(n_eps, size=n_val, replace=False), device=device)
    is_val = torch.isin(episode, val_eps)
    train_idx, val_idx = torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()

    agent = build(cfg, obs_dim, act_dim, act_space.low, act_space.high, image_layout(obs_space)).to(device)
    if cfg.norm_obs:
        agent.norm.update(obs[train_idx])
    opt = torch.optim.AdamW(agent.actor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.total_steps)
    step = 0
    if state is not None:
        step = ckpt.resume(state, agent, {"adamw": opt}, rng)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.total_steps, last_epoch=step - 1)

    store = None
    if agent.layout is not None:  # images: kept as uint8, read in parts
        store = PixelStore(len(obs), agent.layout, device)
        store.put(torch.arange(len(obs), device=device), obs)
        obs = None

    def loss_of(idx: torch.Tensor, augment: bool = True) -> torch.Tensor:
        batch = obs[idx] if store is None else store.parts(idx)
        pred = torch.tanh(agent.train_actions(batch, augment))
        return (pred - target[idx]).square().mean()

    fn = loss_of
    if cfg.compile:
        fn = compiled(loss_of, run.console)
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    t0 = time.perf_counter()
    while step < cfg.total_steps and not run.stop_requested:
        idx = train_idx[torch.randint(0, len(train_idx), (cfg.batch_size,), device=device)]
        loss = fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.total_steps:
            row = {"loss": float(loss.detach())}
            if len(val_idx):
                with torch.no_grad():
                    row["val_loss"] = float(loss_of(val_idx[: 65536 if agent.layout is None else 2048], augment=False))
            run.timers["update"] = time.perf_counter() - t0
            run.log(step, row)
            run.progress(step)
        if step >= next_ckpt or step == cfg.total_steps or run.stop_requested:
            next_ckpt += cfg.checkpoint_every
            ckpt.write_checkpoint(
                run, cfg, vec, step, {"model": agent}, {"adamw": ckpt.optimizer_tensors("adamw", opt)}, rng
            )
    return agent, step
