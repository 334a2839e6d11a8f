"""SAC's n-step returns: what the replay and the demonstrations sum, where they stop, the goal
relabelling of every summed step, and a run that learns with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.common.buffers import DemoBuffer, ReplayBuffer  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.common.spaces import flatten_batch, goal_slices  # noqa: E402
from agents.sac import Backup, build, sac_losses  # noqa: E402
from agents.train import train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()

GAMMA, N = 0.5, 3
EP = 5  # steps per episode


def _reward(e: int, k: int) -> float:
    return 10.0 * e + k + 1


def _expected(e: int, k: int, last: int, terminal_episode: int):
    """Summed reward, last summed step, whether it is terminal, and the discount of step ``k`` of
    episode ``e`` whose last stored step is ``last``."""
    m = min(N, last - k + 1)
    ret = sum(GAMMA**i * _reward(e, k + i) for i in range(m))
    end = k + m - 1
    return ret, end, float(e == terminal_episode and end == EP - 1), GAMMA**m


def _filled(n_step: int) -> ReplayBuffer:
    """One env: episodes 0 to 3 closed (episode 1 ends terminated, the others truncated), then
    three steps of episode 4, still open. Observations are (episode, step); next ones (episode,
    step + 1)."""
    buf = ReplayBuffer(1000, 1, 2, 1, torch.device("cpu"), gamma=GAMMA, n_step=n_step)
    for t in range(4 * EP + 3):
        e, k = divmod(t, EP)
        buf.add(
            np.array([0]),
            torch.tensor([[e, k]], dtype=torch.float32),
            torch.tensor([[e, k + 1]], dtype=torch.float32),
            torch.zeros(1, 1),
            torch.tensor([_reward(e, k)]),
            torch.tensor([float(e == 1 and k == EP - 1)]),
            np.array([k == EP - 1]),
        )
    return buf


def test_n_step_batches_sum_the_episode_s_next_rewards_and_stop_at_its_end():
    obs, _, rew, nxt, term, disc = _filled(N).sample(2000)
    seen = set()
    for o, r, nx, d, g in zip(obs.tolist(), rew.tolist(), nxt.tolist(), term.tolist(), disc.tolist(), strict=True):
        e, k = int(o[0]), int(o[1])
        last = EP - 1 if e < 4 else 2  # episode 4 is open: its latest step is its third
        ret, end, terminal, discount = _expected(e, k, last, terminal_episode=1)
        assert r == pytest.approx(ret) and g == pytest.approx(discount), (e, k)
        assert nx == [e, end + 1] and d == terminal, (e, k)
        seen.add((e, k))
    assert len(seen) == 4 * EP + 3  # every stored transition drawn, near episode ends too


def test_one_step_batches_are_the_stored_transitions_with_the_plain_discount():
    obs, _, rew, nxt, term, disc = _filled(1).sample(500)
    e, k = obs[:, 0], obs[:, 1]
    assert torch.equal(rew, 10.0 * e + k + 1) and torch.equal(nxt[:, 1], k + 1)
    assert torch.equal(term, ((e == 1) & (k == EP - 1)).float())
    assert disc.eq(GAMMA).all()


def test_relabelled_goals_recompute_every_summed_reward():
    env = toy_envs.PointGoalEnv()
    space = env.observation_space
    sl = goal_slices(space)

    def reward_fn(ag, dg):
        return torch.as_tensor(env.compute_reward(ag.numpy(), dg.numpy(), {}))

    buf = ReplayBuffer(
        1000, 1, 6, 2, torch.device("cpu"), sl, her_ratio=0.999, reward_fn=reward_fn, gamma=GAMMA, n_step=N
    )
    f = lambda d: torch.as_tensor(flatten_batch(space, {k: v.numpy() for k, v in d.items()}))  # noqa: E731
    for t in range(4 * EP):  # the achieved goal after step k of episode e: (100 e + k + 1, 0)
        e, k = divmod(t, EP)
        ag = torch.tensor([[100.0 * e + k + 1, 0.0]])
        far = torch.full_like(ag, -9.0)
        o = {"achieved_goal": ag - torch.tensor([1.0, 0.0]), "desired_goal": far, "observation": ag}
        nx = {"achieved_goal": ag, "desired_goal": far, "observation": ag}
        buf.add(np.array([0]), f(o), f(nx), torch.zeros(1, 2), torch.tensor([-1.0]), torch.zeros(1), np.array([k == 4]))
    obs, _, rew, nxt, _, disc = buf.sample(3000)
    goal = obs[:, sl["desired_goal"]]
    relabelled = goal[:, 0] > -9
    assert relabelled.float().mean() > 0.99
    rows = obs[relabelled].tolist(), goal[relabelled].tolist(), rew[relabelled].tolist()
    for o, g, r, nx, d in zip(*rows, nxt[relabelled], disc[relabelled], strict=True):
        start = o[sl["achieved_goal"]][0]  # 100 e + k
        k = int(start) % 100
        m = min(N, EP - k)
        # each summed step earns 0 where its achieved goal is the new goal, -1 elsewhere
        want = sum(GAMMA**i * (0.0 if start + i + 1 == g[0] else -1.0) for i in range(m))
        assert r == pytest.approx(want), (start, g)
        assert nx[sl["achieved_goal"]][0] == start + m and nx[sl["desired_goal"]].tolist() == g
        assert float(d) == pytest.approx(GAMMA**m)
    # goals reached at different summed steps give different sums
    assert len(set(rew[relabelled].tolist())) >= 4


def test_demonstrations_sum_within_their_episodes():
    # two episodes of 4 and 2 transitions: rewards 1, 2, 3, 4 (terminated at the end) and 5, 6 (truncated)
    rewards = torch.tensor([1.0, 2, 3, 4, 5, 6])
    obs = torch.arange(6.0)[:, None]
    terminated = torch.tensor([0.0, 0, 0, 1, 0, 0])
    episode = torch.tensor([0, 0, 0, 0, 1, 1])
    demos = DemoBuffer(obs, torch.zeros(6, 1), rewards, obs + 1, terminated, "cpu", GAMMA, N, episode)
    g = GAMMA
    assert demos.rewards.tolist() == pytest.approx(
        [1 + 2 * g + 3 * g * g, 2 + 3 * g + 4 * g * g, 3 + 4 * g, 4, 5 + 6 * g, 6]
    )
    assert demos.next_obs[:, 0].tolist() == [3, 4, 4, 4, 6, 6]
    assert demos.terminated.tolist() == [0, 1, 1, 1, 0, 0]  # the sums that reach the terminal step
    assert demos.discount.tolist() == pytest.approx([g**3, g**3, g**2, g, g**2, g])
    plain = DemoBuffer(obs, torch.zeros(6, 1), rewards, obs + 1, terminated, "cpu", GAMMA, 1, episode)
    assert plain.rewards.tolist() == rewards.tolist() and plain.discount.eq(GAMMA).all()
    o, _, r, nx, t, d = demos.sample(64)
    i = o[:, 0].long()
    assert torch.equal(r, demos.rewards[i]) and torch.equal(d, demos.discount[i])
    assert torch.equal(nx, demos.next_obs[i]) and torch.equal(t, demos.terminated[i])


def test_the_critics_target_bootstraps_with_each_transition_s_discount():
    cfg = make_config("sac", "ToyPoint-v0", {"net_width": "16", "num_qs": "2"})
    torch.manual_seed(0)
    agent = build(cfg, 2, 2, -np.ones(2), np.ones(2))
    obs, act, nxt = torch.randn(32, 2), torch.rand(32, 2) * 2 - 1, torch.randn(32, 2)
    rew, term = torch.randn(32), torch.zeros(32)
    losses = {}
    for name, disc in (("none", None), ("gamma", torch.full((32,), cfg.gamma)), ("zero", torch.zeros(32))):
        torch.manual_seed(1)
        losses[name] = sac_losses(agent, Backup.of(cfg), -2.0, obs, act, rew, nxt, term, disc)[1]
    assert torch.equal(losses["none"], losses["gamma"])  # the plain discount, exactly
    with torch.no_grad():  # a zero discount leaves the reward alone as the target
        want = (agent.q(agent.norm(obs), act) - rew).square().mean(1).sum()
    assert losses["zero"].item() == pytest.approx(want.item(), rel=1e-5)


def test_n_step_returns_out_of_range_are_refused_naming_them():
    for bad in ("0", "101", "2.5"):
        with pytest.raises(ConfigError, match="n_step_return"):
            make_config("sac", "ToyPoint-v0", {"n_step_return": bad})


@pytest.mark.slow
def test_rl_from_demos_learns_with_n_step_returns(tmp_path):
    demos = tmp_path / "far.safetensors"
    toy_envs.write_demos(demos, "ToyFarLine-v0", lambda obs: np.array([1.0]), episodes=10)
    settings = {
        "net_width": "32",
        "eval_episodes": "10",
        "total_steps": "1500",
        "learning_starts": "100",
        "updates_per_step": "1",
        "batch_size": "128",
        "lr": "3e-3",
        "demos": str(demos),
        "n_step_return": "3",
    }
    result = train(make_config("sac", "ToyFarLine-v0", settings), tmp_path / "run", quiet=True)
    assert result["eval_success_rate"] >= 0.9
    assert json.loads((tmp_path / "run" / "config.json").read_text())["n_step_return"] == 3
