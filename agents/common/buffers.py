"""Replay storage on the learner's device, with hindsight goal relabelling (HER, "future" strategy)
and n-step returns."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from agents.common.spaces import ImageLayout
from agents.common.vision import PixelColumns


class PixelRings:
    """Flat observations in ``n_envs`` rings of ``cap`` slots, indexed ``[env, slot]`` like a tensor
    of ``[n_envs, cap, dim]``, whose pixel features are kept as uint8 (a quarter of the memory) and
    the others as float32; reads give float32 flat rows. The slots are allocated as the rings fill
    (doubling), not all at once: a million 84x84 images would be 21 GB."""

    def __init__(self, n_envs: int, cap: int, layout: ImageLayout, device: torch.device) -> None:
        self.columns = cols = PixelColumns(layout, device)
        rows = min(cap, 256)
        self.pix = torch.zeros((n_envs, rows, len(cols.pix_idx)), dtype=torch.uint8, device=device)
        self.vec = torch.zeros((n_envs, rows, len(cols.vec_idx)), device=device)
        self.cap = cap
        self.shape = (n_envs, cap, layout.dim)

    def reserve(self, slots: int) -> None:
        """Room for slots ``0 .. slots - 1`` in every ring."""
        have = self.pix.shape[1]
        if slots <= have:
            return
        new = min(self.cap, max(slots, 2 * have))
        grow = lambda t: torch.cat([t, t.new_zeros((t.shape[0], new - have, t.shape[2]))], 1)  # noqa: E731
        self.pix, self.vec = grow(self.pix), grow(self.vec)

    def __setitem__(self, key: tuple[torch.Tensor, torch.Tensor], obs: torch.Tensor) -> None:
        ids, slot = key
        self.reserve(int(slot.max()) + 1)
        self.pix[ids, slot], self.vec[ids, slot] = self.columns.split(obs)

    def __getitem__(self, key: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        env, i = key
        return self.columns.join(self.pix[env, i], self.vec[env, i])

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` slots of every ring: (uint8 pixels, float32 features)."""
        self.reserve(n)
        return self.pix[:, :n], self.vec[:, :n]

    def load_head(self, pix: torch.Tensor, vec: torch.Tensor) -> None:
        n = pix.shape[1]
        if pix.shape[::2] != self.pix.shape[::2] or vec.shape[::2] != self.vec.shape[::2] or vec.shape[1] != n:
            raise ValueError(
                f"pixels {list(pix.shape)} and features {list(vec.shape)} do not fit {self.shape[0]} envs x "
                f"{self.pix.shape[2]} pixels and {self.vec.shape[2]} features"
            )
        self.reserve(n)
        self.pix[:, :n], self.vec[:, :n] = pix.to(self.pix.device), vec.to(self.vec.device)


def discount_powers(gamma: float, n_step: int, device: torch.device) -> torch.Tensor:
    """``gamma ** 0 .. gamma ** n_step``, float32."""
    return gamma ** torch.arange(n_step + 1, dtype=torch.float64, device=device).float()


def n_step_window(
    t: torch.Tensor, last: torch.Tensor, powers: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the n-step return of each transition ``t`` reads, its episode ending at ``last``.

    ``powers`` is ``discount_powers(gamma, n)``. Returns the steps whose rewards are summed
    (``[len(t), n]``, repeating the last one past the episode's end), their weights (``gamma ** k``
    for the ``m = min(n, last - t + 1)`` summed, 0 after), the step whose next state and terminal
    flag end the return (``t + m - 1``) and the discount the bootstrap takes (``gamma ** m``).
    Steps are counts, not ring positions: a ring buffer takes them modulo its capacity.
    """
    n = len(powers) - 1
    m = torch.clamp(last - t + 1, max=n)  # rewards summed, >= 1
    k = torch.arange(n, device=t.device)
    steps = torch.minimum(t[:, None] + k, (t + m - 1)[:, None])
    return steps, powers[k] * (k < m[:, None]), t + m - 1, powers[m]


class ReplayBuffer:
    """Transitions of ``n_envs`` envs, a ring per env so each episode is contiguous in time.

    Envs advance at their own pace (asynchronous collection adds a few envs at a time), so each
    keeps its own count of transitions. Every tensor lives on ``device``. ``sample`` makes no
    host synchronisation: it can be captured in a CUDA graph with the update it feeds, as long as
    ``reward_fn`` is made of tensor operations too. For goal envs it relabels a ``her_ratio``
    share of the batch with the achieved goal of a later step of the same episode and
    recomputes its reward with ``reward_fn(achieved, desired) -> reward``.

    Every batch is ``(obs, actions, rewards, next_obs, terminated, discount)``: with ``n_step`` > 1
    each transition's reward is the discounted sum of up to ``n_step`` rewards of its episode from
    it on (fewer where the episode ends, or has not gone further yet), ``next_obs`` and
    ``terminated`` are those of the last of them, and ``discount`` is ``gamma`` to the power of
    how many were summed: the critics' target is ``rewards + discount * (1 - terminated) * V``.
    Relabelled transitions have each summed reward recomputed for their new goal.

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
        layout: ImageLayout | None = None,
        gamma: float = 0.99,
        n_step: int = 1,
    ) -> None:
        if n_step < 1:
            raise ValueError(f"n_step must be at least 1, got {n_step}")
        self.cap = max(capacity // n_envs, 1)
        self.n_envs, self.device = n_envs, device
        z = lambda *s: torch.zeros((n_envs, self.cap, *s), dtype=torch.float32, device=device)  # noqa: E731
        if layout is None:
            self.obs, self.next_obs = z(obs_dim), z(obs_dim)
        else:  # image observations: uint8 pixels, allocated as they arrive
            self.obs, self.next_obs = (PixelRings(n_envs, self.cap, layout, device) for _ in range(2))
        self.obs_dim = obs_dim
        self.actions, self.rewards, self.terminated = z(act_dim), z(), z()
        self.ep_end = torch.full((n_envs, self.cap), -1, dtype=torch.long, device=device)
        self.t = torch.zeros(n_envs, dtype=torch.long, device=device)  # transitions added per env
        self.t_host = np.zeros(n_envs, dtype=np.int64)  # the same, kept on the host for book-keeping
        self.ep_start_host = np.zeros(n_envs, dtype=np.int64)  # first step of each env's open episode
        self.goal = goal_slices
        self.her_ratio = her_ratio if goal_slices is not None else 0.0
        self.reward_fn = reward_fn
        self.gamma, self.n_step = gamma, n_step
        self._powers = discount_powers(gamma, n_step, device)

    def __len__(self) -> int:
        return int(np.minimum(self.t_host, self.cap).sum())

    def add(
        self,
        env_ids: np.ndarray,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        episode_over: np.ndarray,
        env_ids_dev: torch.Tensor | None = None,
    ) -> None:
        """One step of the envs ``env_ids`` (host int array, distinct); ``episode_over`` (host bool)
        closes their episodes. ``env_ids_dev`` is the same ids on the device, if already there."""
        if len(env_ids) == 0:
            return
        ids = env_ids_dev if env_ids_dev is not None else torch.as_tensor(env_ids, device=self.device)
        slot = self.t[ids] % self.cap
        self.obs[ids, slot], self.next_obs[ids, slot] = obs, next_obs
        self.actions[ids, slot], self.rewards[ids, slot], self.terminated[ids, slot] = actions, rewards, terminated
        self.ep_end[ids, slot] = -1
        self.t[ids] += 1
        self.t_host[env_ids] += 1
        done = env_ids[np.asarray(episode_over, dtype=bool)]
        if len(done):
            self._close(done)

    def end_episodes(self, env_ids: np.ndarray) -> None:
        """Close the open episodes of ``env_ids`` at their last stored step (their next steps
        were lost, e.g. with a worker that died), so relabelling never crosses into the next."""
        open_ = env_ids[self.t_host[env_ids] > self.ep_start_host[env_ids]]
        if len(open_):
            self._close(open_)

    def _close(self, env_ids: np.ndarray) -> None:
        """Mark every stored step of each env's open episode with the episode's last step."""
        last = self.t_host[env_ids] - 1
        start = np.maximum(self.ep_start_host[env_ids], self.t_host[env_ids] - self.cap)
        rows = np.repeat(env_ids, last - start + 1)
        steps = np.concatenate([np.arange(a, b + 1) for a, b in zip(start, last, strict=True)])
        ends = np.repeat(last, last - start + 1)
        index = torch.as_tensor(np.stack([rows, steps % self.cap, ends]), device=self.device)
        self.ep_end[index[0], index[1]] = index[2]
        self.ep_start_host[env_ids] = self.t_host[env_ids]

    def sample(self, batch: int) -> tuple[torch.Tensor, ...]:
        """A uniform batch over every stored transition (no host synchronisation)."""
        stored = torch.clamp(self.t, max=self.cap)
        cum = torch.cumsum(stored, 0)
        total = cum[-1:].clamp(min=1)
        u = (torch.rand(batch, device=self.device, dtype=torch.float64) * total).long()
        env = torch.searchsorted(cum, u, right=True).clamp(max=self.n_envs - 1)
        k = u - (cum[env] - stored[env])  # position among this env's stored transitions
        t_i = self.t[env] - stored[env] + k  # the transition's step count in its env
        i = t_i % self.cap
        relabelling = self.her_ratio > 0.0
        if relabelling or self.n_step > 1:
            end = self.ep_end[env, i]
            end = torch.where(end < 0, self.t[env] - 1, end)  # an open episode: its latest step
        if self.n_step > 1:  # the next rewards of the same episode, up to its end or latest step
            steps, weights, j, discount = n_step_window(t_i, end, self._powers)
            steps, j = steps % self.cap, j % self.cap
            rewards = self.rewards[env[:, None], steps]
        else:
            rewards, j = self.rewards[env, i], i
            discount = torch.full((batch,), self.gamma, device=self.device)
        obs, actions = self.obs[env, i], self.actions[env, i]
        next_obs, terminated = self.next_obs[env, j], self.terminated[env, j]
        if relabelling:
            span = end - t_i + 1
            t_j = t_i + torch.minimum((torch.rand(batch, device=self.device) * span).long(), span - 1)
            relabel = torch.rand(batch, device=self.device) < self.her_ratio
            ag, dg = self.goal["achieved_goal"], self.goal["desired_goal"]
            new_goal = self.next_obs[env, t_j % self.cap, ag]
            goal = torch.where(relabel[:, None], new_goal, obs[:, dg])
            obs = obs.clone()
            next_obs = next_obs.clone()
            obs[:, dg] = goal
            next_obs[:, dg] = goal
            if self.n_step > 1:  # every summed step's reward, for the new goal
                achieved = self.next_obs[env[:, None], steps, ag]
                g = goal[:, None].expand_as(achieved)
                new_r = self.reward_fn(achieved.reshape(-1, g.shape[-1]), g.reshape(-1, g.shape[-1]))
                rewards = torch.where(relabel[:, None], new_r.reshape(rewards.shape), rewards)
            else:
                new_r = self.reward_fn(next_obs[:, ag], goal)
                rewards = torch.where(relabel, new_r, rewards)
        if self.n_step > 1:
            rewards = (rewards * weights).sum(1)
        return obs, actions, rewards, next_obs, terminated, discount

    def state(self) -> dict[str, torch.Tensor]:
        n = int(min(int(self.t_host.max()), self.cap))
        if isinstance(self.obs, PixelRings):
            (op, ov), (np_, nv) = self.obs.head(n), self.next_obs.head(n)
            obs = {
                "replay.obs_pixels": op,
                "replay.obs_vector": ov,
                "replay.next_pixels": np_,
                "replay.next_vector": nv,
            }
        else:
            obs = {"replay.obs": self.obs[:, :n], "replay.next_obs": self.next_obs[:, :n]}
        return {
            **obs,
            "replay.actions": self.actions[:, :n],
            "replay.rewards": self.rewards[:, :n],
            "replay.terminated": self.terminated[:, :n],
            "replay.ep_end": self.ep_end[:, :n],
            "replay.t": torch.as_tensor(self.t_host),
            "replay.ep_start": torch.as_tensor(self.ep_start_host),
        }

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        shape = st["replay.actions"].shape
        n = shape[1]
        if shape[0] != self.n_envs or n > self.cap or shape[2] != self.actions.shape[2]:
            raise ValueError(
                f"replay buffer of {shape[0]} envs x {n} transitions x {shape[2]} action(s) does not fit "
                f"{self.n_envs} envs x {self.cap} x {self.actions.shape[2]}"
            )
        images = isinstance(self.obs, PixelRings)
        if images != ("replay.obs_pixels" in st):
            saved, here = ("images", "state vectors") if not images else ("state vectors", "images")
            raise ValueError(f"its observations are {saved}, this run's are {here}")
        if images:
            self.obs.load_head(st["replay.obs_pixels"], st["replay.obs_vector"])
            self.next_obs.load_head(st["replay.next_pixels"], st["replay.next_vector"])
        elif st["replay.obs"].shape[2] != self.obs_dim or st["replay.obs"].shape[1] != n:
            raise ValueError(f"observations of {st['replay.obs'].shape[2]} numbers, this run's have {self.obs_dim}")
        t = st["replay.t"].reshape(-1).to(torch.int64)
        if t.numel() != self.n_envs:  # the format of lock-step runs: one count for every env
            t = t[:1].expand(self.n_envs)
        names = (
            ("actions", "rewards", "terminated", "ep_end")
            if images
            else ("obs", "next_obs", "actions", "rewards", "terminated", "ep_end")
        )
        for name in names:
            getattr(self, name)[:, :n] = st[f"replay.{name}"].to(self.device)
        self.t.copy_(t.to(self.device))
        self.t_host[:] = t.cpu().numpy()
        self.ep_start_host[:] = st["replay.ep_start"].reshape(-1).cpu().numpy()


class DemoBuffer:
    """Demonstration transitions on the learner's device, sampled uniformly (no host sync).

    ``actions`` are in the agent's squashed [-1, 1] form, like the replay buffer's. Batches are
    those of ``ReplayBuffer``: with ``n_step`` > 1 and ``episode`` (each transition's episode,
    episodes stored one after another, as ``twin demos`` writes them) each transition's reward
    sums up to ``n_step`` rewards of its episode, computed once here; without ``episode`` every
    transition stands alone.
    """

    def __init__(
        self,
        obs,
        actions,
        rewards,
        next_obs,
        terminated,
        device: torch.device,
        gamma: float = 0.99,
        n_step: int = 1,
        episode=None,
    ) -> None:
        f = lambda t: torch.as_tensor(t, dtype=torch.float32).to(device)  # noqa: E731
        self.obs, self.actions, self.rewards = f(obs), f(actions), f(rewards)
        self.next_obs, self.terminated = f(next_obs), f(terminated)
        self.n, self.device = len(self.obs), device
        self.discount = torch.full((self.n,), gamma, device=device)
        if n_step > 1 and episode is not None and self.n:
            self._n_step(torch.as_tensor(episode).to(device), gamma, n_step)

    def _n_step(self, episode: torch.Tensor, gamma: float, n_step: int) -> None:
        if len(episode) != self.n:
            raise ValueError(f"{len(episode)} episode numbers for {self.n} transitions")
        idx = torch.arange(self.n, device=self.device)
        # each transition's episode's last transition: the last index before the episode changes
        change = torch.cat([episode[1:] != episode[:-1], torch.ones(1, dtype=torch.bool, device=self.device)])
        ends = idx[change]
        last = ends[torch.searchsorted(ends, idx)]
        steps, weights, j, self.discount = n_step_window(idx, last, discount_powers(gamma, n_step, self.device))
        self.rewards = (self.rewards[steps] * weights).sum(1)
        self.next_obs, self.terminated = self.next_obs[j], self.terminated[j]

    def __len__(self) -> int:
        return self.n

    def sample(self, batch: int) -> tuple[torch.Tensor, ...]:
        i = torch.randint(0, self.n, (batch,), device=self.device)
        return self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminated[i], self.discount[i]


def demo_rows(batch: int, demo_ratio: float) -> int:
    """How many of a ``batch``'s transitions ``mixed_sample`` takes from the demonstrations."""
    return min(batch - 1, max(1, round(batch * demo_ratio)))


def mixed_sample(
    online: Callable[[int], tuple[torch.Tensor, ...]], demos: DemoBuffer, batch: int, demo_ratio: float
) -> Callable[[], tuple[torch.Tensor, ...]]:
    """A sampler of batches of ``demo_rows(batch, demo_ratio)`` demonstration transitions, last,
    after the rest from ``online`` (RLPD's symmetric sampling at ``demo_ratio = 0.5``)."""
    k = demo_rows(batch, demo_ratio)

    def sample() -> tuple[torch.Tensor, ...]:
        a, b = online(batch - k), demos.sample(k)
        return tuple(torch.cat([x, y]) for x, y in zip(a, b, strict=True))

    return sample
