"""Replay storage on the learner's device, with hindsight goal relabelling (HER, "future" strategy)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class ReplayBuffer:
    """Transitions of ``n_envs`` parallel envs, kept per env so each episode is contiguous in time.

    Every tensor lives on ``device``; adding a vector step is one indexed write, sampling is a
    handful of gathers. For goal envs, ``sample`` relabels a ``her_ratio`` share of the batch
    with the achieved goal of a later step of the same episode and recomputes its reward with
    ``reward_fn(achieved, desired) -> reward`` (the env's own ``compute_reward``).

    Args:
        capacity: Transitions in total (split evenly over the envs).
        goal_slices: For goal envs, where ``achieved_goal`` and ``desired_goal`` lie in the flat
            observation (see ``agents.common.spaces.goal_slices``); None otherwise.
    """

    def __init__(
        self,
        capacity: int,
        n_envs: int,
        obs_dim: int,
        act_dim: int,
        device: torch.device,
        goal_slices: dict[str, slice] | None = None,
        her_ratio: float = 0.0,
        reward_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.cap = max(capacity // n_envs, 1)
        self.n_envs, self.device = n_envs, device
        z = lambda *s: torch.zeros((n_envs, self.cap, *s), dtype=torch.float32, device=device)  # noqa: E731
        self.obs, self.next_obs = z(obs_dim), z(obs_dim)
        self.actions, self.rewards, self.terminated = z(act_dim), z(), z()
        self.ep_end = torch.full((n_envs, self.cap), -1, dtype=torch.long, device=device)
        self.t = 0  # transitions added per env so far (the same for every env)
        self.ep_start = torch.zeros(n_envs, dtype=torch.long, device=device)
        self.goal = goal_slices
        self.her_ratio = her_ratio if goal_slices is not None else 0.0
        self.reward_fn = reward_fn
        self._envs = torch.arange(n_envs, device=device)

    def __len__(self) -> int:
        return min(self.t, self.cap) * self.n_envs

    def add(
        self,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        episode_over: torch.Tensor,
    ) -> None:
        """One vector step; ``episode_over`` (terminated or truncated) closes each env's episode."""
        slot = self.t % self.cap
        self.obs[:, slot], self.next_obs[:, slot] = obs, next_obs
        self.actions[:, slot], self.rewards[:, slot], self.terminated[:, slot] = actions, rewards, terminated
        self.ep_end[:, slot] = -1
        done = torch.nonzero(episode_over).flatten()
        if len(done):  # mark every step of the finished episodes with its last step
            length = self.t - self.ep_start[done] + 1
            longest = int(length.max())
            offs = torch.arange(longest, device=self.device)
            ts = self.ep_start[done, None] + offs  # global steps of each episode (padded)
            valid = (offs < length[:, None]) & (ts > self.t - self.cap)
            rows = done[:, None].expand_as(ts)[valid]
            self.ep_end[rows, ts[valid] % self.cap] = self.t
            self.ep_start[done] = self.t + 1
        self.t += 1

    def sample(self, batch: int) -> tuple[torch.Tensor, ...]:
        n_stored = min(self.t, self.cap)
        env = torch.randint(0, self.n_envs, (batch,), device=self.device)
        first = self.t - n_stored  # oldest global step still stored
        t_i = first + torch.randint(0, n_stored, (batch,), device=self.device)
        i = t_i % self.cap
        obs, next_obs = self.obs[env, i], self.next_obs[env, i]
        actions, rewards, terminated = self.actions[env, i], self.rewards[env, i], self.terminated[env, i]
        if self.her_ratio > 0.0:
            end = self.ep_end[env, i]
            end = torch.where(end < 0, torch.full_like(end, self.t - 1), end)
            span = end - t_i + 1
            t_j = t_i + (torch.rand(batch, device=self.device) * span).long().clamp_max(span - 1)
            relabel = torch.rand(batch, device=self.device) < self.her_ratio
            ag, dg = self.goal["achieved_goal"], self.goal["desired_goal"]
            new_goal = self.next_obs[env, t_j % self.cap, ag]
            goal = torch.where(relabel[:, None], new_goal, obs[:, dg])
            obs = obs.clone()
            next_obs = next_obs.clone()
            obs[:, dg] = goal
            next_obs[:, dg] = goal
            new_r = self.reward_fn(next_obs[:, ag], goal)
            rewards = torch.where(relabel, new_r, rewards)
        return obs, actions, rewards, next_obs, terminated

    def state(self) -> dict[str, torch.Tensor]:
        n = min(self.t, self.cap)
        return {
            "replay.obs": self.obs[:, :n],
            "replay.next_obs": self.next_obs[:, :n],
            "replay.actions": self.actions[:, :n],
            "replay.rewards": self.rewards[:, :n],
            "replay.terminated": self.terminated[:, :n],
            "replay.ep_end": self.ep_end[:, :n],
            "replay.ep_start": self.ep_start,
            "replay.t": torch.tensor([self.t]),
        }

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        n = st["replay.obs"].shape[1]
        if st["replay.obs"].shape[0] != self.n_envs or n > self.cap or st["replay.obs"].shape[2] != self.obs.shape[2]:
            raise ValueError(
                f"replay buffer of shape {list(st['replay.obs'].shape)} does not fit "
                f"{self.n_envs} envs x {self.cap} x {self.obs.shape[2]}"
            )
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "ep_end"):
            getattr(self, name)[:, :n] = st[f"replay.{name}"].to(self.device)
        self.ep_start.copy_(st["replay.ep_start"].to(self.device))
        self.t = int(st["replay.t"][0])
