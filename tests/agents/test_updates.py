"""Updates on the device: HER rewards as tensor operations, CUDA-graph updates equal eager ones."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import envs  # noqa: E402, F401
from agents.common.config import make_config  # noqa: E402
from agents.common.rewards import RewardSpecError, device_reward, goal_reward  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()


class MisdeclaredGoalEnv(toy_envs.PointGoalEnv):
    """Declares a threshold its own compute_reward does not use."""

    def goal_reward_spec(self):
        return {"type": "goal_distance", "threshold": 0.5, "reward_type": "sparse"}


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_device_her_rewards_equal_the_envs_compute_reward(reward_type):
    env = gym.make("FactoryReach-v0", obs_mode="goal", reward_type=reward_type)
    try:
        fn, on_device = goal_reward(env, env.observation_space, torch.device("cpu"))
        assert on_device
        rng = np.random.default_rng(1)
        achieved = rng.uniform([0.2, -0.45, 0.76], [0.9, 0.45, 1.35], (4000, 3)).astype(np.float32)
        # goals at every distance, many of them within a few millimetres of the 3 cm threshold
        offsets = rng.normal(size=(4000, 3))
        offsets *= (rng.choice([0.01, 0.029, 0.031, 0.3], 4000) / np.linalg.norm(offsets, axis=1))[:, None]
        desired = (achieved + offsets).astype(np.float32)
        want = env.unwrapped.compute_reward(achieved, desired, {})
        got = fn(torch.from_numpy(achieved), torch.from_numpy(desired)).numpy()
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)
        if reward_type == "sparse":
            assert set(np.unique(got)) == {-1.0, 0.0}
    finally:
        env.close()


def test_goal_envs_without_a_declaration_use_their_own_compute_reward():
    env = toy_envs.PointGoalEnv()
    fn, on_device = goal_reward(env, env.observation_space, torch.device("cpu"))
    assert not on_device
    a, d = torch.zeros(3, 2), torch.tensor([[0.0, 0.1], [0.0, 0.2], [1.0, 1.0]])
    assert fn(a, d).tolist() == [0.0, -1.0, -1.0]


def test_a_declaration_that_disagrees_with_compute_reward_is_refused():
    env = MisdeclaredGoalEnv()
    with pytest.raises(RewardSpecError, match=r"goal_reward_spec\(\) gives .* where its compute_reward gives"):
        goal_reward(env, env.observation_space, torch.device("cpu"))
    with pytest.raises(RewardSpecError, match="reward_type"):
        device_reward({"type": "goal_distance", "threshold": 0.1, "reward_type": "huge"})


def _close(a: torch.nn.Module, b: torch.nn.Module, atol: float = 1e-5) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


def _filled_buffer(dev, reward_fn):
    """A goal-env replay buffer on ``dev`` holding 3 episodes of 20 steps in each of 2 envs."""
    from agents.common.buffers import ReplayBuffer
    from agents.common.spaces import goal_slices

    space = toy_envs.PointGoalEnv().observation_space
    buf = ReplayBuffer(512, 2, 6, 2, dev, goal_slices=goal_slices(space), her_ratio=0.8, reward_fn=reward_fn)
    g = torch.Generator(device=dev).manual_seed(1)
    ids = np.arange(2)
    for step in range(60):
        obs, next_obs = (torch.randn(2, 6, device=dev, generator=g) for _ in range(2))
        act = torch.rand(2, 2, device=dev, generator=g) * 2 - 1
        rew = -(torch.rand(2, device=dev, generator=g) < 0.9).float()
        buf.add(ids, obs, next_obs, act, rew, torch.zeros(2, device=dev), np.full(2, step % 20 == 19))
    return buf


@pytest.mark.gpu
@pytest.mark.parametrize(
    "rlpd",
    [{}, {"num_qs": "10", "num_min_qs": "2", "actor_q": "mean", "actor_every": "2", "backup_entropy": "false"}],
    ids=["two-critics", "rlpd-ensemble"],
)
def test_sac_cuda_graph_update_equals_the_eager_update(rlpd):
    """The whole captured update (sampling from the device buffer, HER relabelling with the device
    reward, critic, actor, temperature and target steps; with RLPD's settings the target's random
    subset of critics and the critic-only updates between actor updates) against the same update
    run eagerly."""
    from agents.common.rewards import device_reward
    from agents.sac import SACAgent, Updater

    dev = torch.device("cuda")
    cfg = make_config("sac", "ToyPointGoal-v0", {"batch_size": "64", "net_width": "32", **rlpd})
    reward = device_reward({"type": "goal_distance", "threshold": 0.15, "reward_type": "sparse"})
    buf_graph, buf_eager = _filled_buffer(dev, reward), _filled_buffer(dev, reward)
    torch.manual_seed(0)
    graphed = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2)).to(dev)
    up_graph = Updater(graphed, cfg, -2.0, lambda: buf_graph.sample(64), dev, graph=True, sample_in_graph=True)
    kinds = 2 if cfg.actor_every > 1 else 1  # a graph with the actor's step, and one without
    assert up_graph() == kinds * Updater.WARMUP and len(up_graph._graphs) == kinds  # warm-ups, then capture
    # the same weights and optimiser state, updated eagerly from the same buffer with the same random numbers
    eager = copy.deepcopy(graphed)
    up_eager = Updater(eager, cfg, -2.0, lambda: buf_eager.sample(64), dev, graph=False)
    up_eager.count = up_graph.count
    for name, opt in up_eager.optimizers().items():
        opt.load_state_dict(up_graph.optimizers()[name].state_dict())
    assert buf_graph.her_ratio == 0.8 and buf_graph.reward_fn is reward  # relabelling runs inside the graph
    for _ in range(4):
        torch.cuda.manual_seed(7)
        assert up_eager() == 1
        torch.cuda.manual_seed(7)
        assert up_graph() == 1
        torch.testing.assert_close(up_graph.losses, up_eager.losses, atol=1e-5, rtol=1e-4)
        _close(eager, graphed)


@pytest.mark.gpu
def test_ppo_cuda_graph_update_equals_the_eager_update():
    from agents.ppo import PPOAgent, Rollout, Updater, ppo_loss

    dev = torch.device("cuda")
    cfg = make_config("ppo", "ToyPoint-v0", {"n_steps": "16", "n_minibatches": "2", "update_epochs": "2"})
    torch.manual_seed(0)
    graphed = PPOAgent(cfg, 2, 1, -np.ones(1), np.ones(1)).to(dev)
    ro = Rollout(16, 4, 2, 1, dev)
    g = torch.Generator(device=dev).manual_seed(2)
    for t in (ro.obs, ro.raw, ro.act, ro.logp, ro.rew, ro.val, ro.last_obs):
        t.copy_(torch.randn(t.shape, device=dev, generator=g))
    ro.done.copy_((torch.rand(ro.done.shape, device=dev, generator=g) < 0.1).float())
    up_graph = Updater(graphed, cfg, ro, dev, graph=True, loss_fn=ppo_loss)
    up_graph.set_lr(1e-3)
    up_graph()  # the warm-up update, then capture
    assert up_graph._graph is not None
    eager = copy.deepcopy(graphed)
    up_eager = Updater(eager, cfg, ro, dev, graph=False, loss_fn=ppo_loss)
    up_eager.opt.load_state_dict(up_graph.opt.state_dict())
    for lr in (1e-3, 5e-4):  # the learning rate moves without a new capture
        up_graph.set_lr(lr)
        up_eager.set_lr(lr)
        torch.cuda.manual_seed(11)
        want = up_eager.step()
        torch.cuda.manual_seed(11)
        got = up_graph()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        _close(eager, graphed)
