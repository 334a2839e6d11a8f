"""Worker pools: the same transitions as SyncVectorEnv, asynchronous receipt, dead and hung workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import pytest

from agents.collect.pool import InlinePool, WorkerError
from agents.collect.processes import ProcessPool
from agents.collect.vec import SeedQueue, env_factory, make_vec_env
from tests.agents import toy_envs

toy_envs.register()

SAME, DISABLED = gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.DISABLED


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) and a.dtype == object:
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(np.asarray(a), np.asarray(b))


def _actions(t: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(t).uniform(-1, 1, (n, dim)).astype(np.float32)


@pytest.mark.parametrize(
    ("env_id", "kwargs", "n", "workers", "double_buffer"),
    [
        ("FactoryReach-v0", {"obs_mode": "goal"}, 5, 2, True),  # Dict observations, uneven slots
        ("ToyPoint-v0", {}, 4, 4, False),  # one env per worker
        ("ToyPoint-v0", {}, 6, 1, True),  # one worker, two slots
    ],
    ids=["reach-goal-5envs-2workers", "toy-4workers", "toy-1worker-double-buffered"],
)
def test_pool_gives_the_transitions_of_sync_vector_env(env_id, kwargs, n, workers, double_buffer):
    fns = [env_factory(env_id, kwargs) for _ in range(n)]
    ref = gym.vector.SyncVectorEnv(fns, autoreset_mode=SAME)
    pool = ProcessPool(fns, workers=workers, double_buffer=double_buffer)
    try:
        assert _equal(ref.reset(seed=7), pool.reset(seed=7))
        dim = ref.single_action_space.shape[0]
        ended = 0
        for t in range(70):  # several episodes end on the way (Reach: 50 steps, toy: 30)
            a = _actions(t, n, dim)
            want, got = ref.step(a), pool.step(a)
            for w, g in zip(want, got, strict=True):
                assert _equal(w, g), f"step {t}"
            ended += int(want[4].get("_final_obs", np.zeros(n, bool)).sum())
        assert ended >= n  # autoreset and final_obs were exercised
    finally:
        pool.close()
        ref.close()


def test_pool_reset_mask_matches_sync_vector_env_with_autoreset_disabled():
    fns = [env_factory("ToyPoint-v0") for _ in range(4)]
    ref = gym.vector.SyncVectorEnv(fns, autoreset_mode=DISABLED)
    pool = ProcessPool(fns, workers=2, autoreset="disabled")
    try:
        assert _equal(ref.reset(seed=[1, 2, 3, 4]), pool.reset(seed=[1, 2, 3, 4]))
        for t in range(35):
            a = _actions(t, 4, 1)
            want, got = ref.step(a), pool.step(a)
            assert all(_equal(w, g) for w, g in zip(want, got, strict=True))
            done = want[2] | want[3]
            if done.any():
                opts = {"reset_mask": done}
                seeds = [100 + t + i for i in range(4)]
                assert _equal(ref.reset(seed=seeds, options=dict(opts)), pool.reset(seed=seeds, options=dict(opts)))
    finally:
        pool.close()
        ref.close()


def test_async_receipt_acts_on_ready_envs_and_each_env_sees_its_own_sequence():
    """Whatever order the workers finish in, env i's transitions are those of env i alone."""
    n = 6
    fns = [env_factory("ToyPoint-v0") for _ in range(n)]
    pool = ProcessPool(fns, workers=3)
    ref = [fn() for fn in fns]
    try:
        obs, _ = pool.reset(seed=0)
        for i, env in enumerate(ref):
            assert np.array_equal(env.reset(seed=i)[0], obs[i])
        steps = np.zeros(n, dtype=int)
        pool.send(np.full((n, 1), -0.3, np.float32))  # the action of step s: 0.1 (s mod 7) - 0.3
        sizes = set()
        while steps.min() < 40:
            b = pool.recv(min_envs=1)
            sizes.add(len(b.env_ids))
            for k, i in enumerate(b.env_ids):
                o, r, _, trunc, _ = ref[i].step(np.full(1, 0.1 * (steps[i] % 7) - 0.3, np.float32))
                if trunc:
                    assert np.array_equal(b.finals[k][0], o)
                    o, _ = ref[i].reset()
                assert np.array_equal(b.obs[k], o) and b.rewards[k] == r and b.truncated[k] == trunc
            steps[b.env_ids] += 1
            pool.send((0.1 * (steps[b.env_ids] % 7) - 0.3)[:, None].astype(np.float32), b.env_ids)
        pool.recv()
        assert min(sizes) < n  # envs came back in several batches, not in lock-step
    finally:
        pool.close()


def test_send_refuses_partial_slots_and_envs_in_flight():
    pool = ProcessPool([env_factory("ToyPoint-v0") for _ in range(4)], workers=2, double_buffer=False)
    try:
        pool.reset(seed=0)
        with pytest.raises(WorkerError, match="whole slots"):
            pool.send(np.zeros((1, 1), np.float32), np.array([0]))
        pool.send(np.zeros((2, 1), np.float32), np.array([0, 1]))
        with pytest.raises(WorkerError, match="not received"):
            pool.send(np.zeros((2, 1), np.float32), np.array([0, 1]))
        b = pool.recv()
        assert b.env_ids.tolist() == [0, 1]
        with pytest.raises(WorkerError, match="no step in flight"):
            pool.recv()
    finally:
        pool.close()


def test_a_killed_worker_is_reported_replaced_and_its_episodes_dropped(tmp_path):
    flag = tmp_path / "kill"
    lines = []
    fns = [env_factory("ToyFaulty-v0", {"kill_flag": str(flag), "after": 3}) for _ in range(4)]
    pool = ProcessPool(fns, workers=2, double_buffer=False, notify=lines.append, seed=0)
    try:
        obs, _ = pool.reset(seed=0)
        pids = [p.pid for p in pool._procs]
        for _ in range(2):
            pool.step(np.zeros((4, 1), np.float32))
        last = pool.step(np.zeros((4, 1), np.float32))[0]
        flag.touch()  # the next step of the first env to see it kills its worker
        obs, rew, term, trunc, info = pool.step(np.zeros((4, 1), np.float32))
        dead = [w for w in range(2) if pool._procs[w].pid != pids[w]]
        assert len(dead) == 1 and pool.worker_restarts == 1 and pool.episodes_dropped == 2
        envs = np.arange(2 * dead[0], 2 * dead[0] + 2)
        assert info["dropped"][envs].all() and info["_dropped"].sum() == 2
        assert trunc[envs].all() and not term[envs].any() and (rew[envs] == 0).all()
        for i in envs:  # the last observation the learner saw, and a fresh episode
            assert np.array_equal(info["final_obs"][i], last[i])
            assert obs[i][1] == 0.0  # the step counter of a fresh episode
        assert len(lines) == 1 and "died (killed by SIGKILL)" in lines[0] and f"env worker {dead[0]}" in lines[0]
        for _ in range(40):  # and the pool goes on
            obs, rew, term, trunc, info = pool.step(np.zeros((4, 1), np.float32))
            assert "dropped" not in info
    finally:
        pool.close()
    assert all(not p.is_alive() for p in pool._procs)


def test_a_hung_worker_is_killed_and_replaced(tmp_path):
    flag = tmp_path / "hang"
    lines = []
    fns = [env_factory("ToyFaulty-v0", {"hang_flag": str(flag), "after": 1}) for _ in range(2)]
    pool = ProcessPool(fns, workers=2, notify=lines.append, step_timeout=1.5)
    try:
        pool.reset(seed=0)
        flag.touch()
        t0 = time.monotonic()
        _, _, _, trunc, info = pool.step(np.zeros((2, 1), np.float32))
        assert time.monotonic() - t0 < 20
        assert info["_dropped"].sum() == 1 and trunc[info["_dropped"]].all()
        assert "stopped answering" in lines[0]
    finally:
        pool.close()


def test_an_env_exception_names_the_worker_and_carries_the_traceback(tmp_path):
    flag = tmp_path / "raise"
    flag.touch()
    pool = ProcessPool([env_factory("ToyFaulty-v0", {"raise_flag": str(flag), "after": 1})], workers=1)
    try:
        pool.reset(seed=0)
        with pytest.raises(WorkerError, match=r"(?s)env worker 0 .*RuntimeError: the env broke on purpose"):
            pool.step(np.zeros((1, 1), np.float32))
    finally:
        pool.close()


def test_workers_keep_blas_and_torch_to_one_thread():
    pool = make_vec_env("ToyThreads-v0", 2, workers=2)
    try:
        pool.reset(seed=0)
        _, _, _, _, info = pool.step(np.zeros((2, 1), np.float32))
        assert info["threads"].tolist() == [1, 1]
        assert len(set(info["pid"].tolist()) | {os.getpid()}) == 3
    finally:
        pool.close()


def test_inline_pool_runs_in_this_process():
    pool = InlinePool([env_factory("ToyThreads-v0") for _ in range(2)])
    try:
        pool.reset(seed=0)
        _, _, _, _, info = pool.step(np.zeros((2, 1), np.float32))
        assert info["pid"].tolist() == [os.getpid()] * 2
    finally:
        pool.close()


def test_seed_queue_runs_a_lost_episode_again_on_its_seed(tmp_path):
    flag = tmp_path / "kill"
    pool = make_vec_env(
        "ToyFaulty-v0", 2, {"kill_flag": str(flag), "after": 5}, autoreset="disabled", workers=2, notify=lambda _: None
    )
    try:
        queue = SeedQueue(pool, [10, 11, 12])
        queue.reset()
        seen = []
        flag.touch()
        while queue.active.any():
            _, _, term, trunc, info = pool.step(np.zeros((2, 1), np.float32))
            done = (term | trunc) & queue.active
            if done.any():
                dropped = info.get("dropped", np.zeros(2, bool)) & info.get("_dropped", np.zeros(2, bool))
                seen += [queue.current[i] for i in np.flatnonzero(done & ~dropped)]
                queue.advance(done, dropped)
        assert sorted(seen) == [10, 11, 12] and pool.worker_restarts == 1
    finally:
        pool.close()


def test_workers_die_with_their_parent(tmp_path):
    """A learner killed with SIGKILL leaves no worker behind."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from tests.agents import toy_envs
        toy_envs.register()
        from agents.collect.vec import make_vec_env
        pool = make_vec_env("ToyPoint-v0", 2, workers=2)
        print(" ".join(str(p.pid) for p in pool._procs), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_ray_backend_replaces_a_killed_actor_and_trains(tmp_path):
    pytest.importorskip("ray")
    import ray

    from agents.collect.ray_pool import ensure_ray
    from agents.common.config import make_config
    from agents.train import train

    assert ensure_ray(4)  # a local cluster of 4 CPUs for both pools below
    try:
        lines = []
        pool = make_vec_env("ToyPoint-v0", 4, workers=2, backend="ray", notify=lines.append, seed=0)
        try:
            pool.reset(seed=0)
            pool.step(np.zeros((4, 1), np.float32))
            os.kill(ray.get(pool._actors[1].pid.remote()), signal.SIGKILL)
            dropped = np.zeros(4, bool)
            for _ in range(5):
                _, _, _, trunc, info = pool.step(np.zeros((4, 1), np.float32))
                if "dropped" in info:
                    dropped |= info["_dropped"]
                    assert trunc[info["_dropped"]].all()
            assert dropped.tolist() == [False, False, True, True] and pool.worker_restarts == 1
            assert "env worker 1 (envs 2-3) died" in lines[0]
            with pytest.raises(WorkerError, match="CPU"):  # 2 of the 4 CPUs are taken
                make_vec_env("ToyPoint-v0", 3, workers=3, backend="ray")
        finally:
            pool.close()
        # a tiny run on Ray actors, through the entry point `twin train --backend ray` uses
        settings = {"total_steps": "256", "learning_starts": "64", "n_envs": "2", "backend": "ray", "net_width": "32"}
        cfg = make_config("sac", "ToyPoint-v0", settings)
        cfg.eval_episodes = 4
        res = train(cfg, tmp_path / "ray-run", quiet=True)
        assert res["step"] >= 256 and res["eval_episodes"] == 4
    finally:
        ray.shutdown()
