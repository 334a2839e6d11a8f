"""The service in real processes: killed at the worst moments, it loses nothing; ``twin submit``
as a team runs it, with its exit codes."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.agents.hostile_policies import slow_policy
from tests.service.live import Live, twin
from tests.service.policies import REACH_ACT, REACH_OBS, nan_policy, reach_policy

SUITE = """name = "fault-drill"
[[tasks]]
env_id = "FactoryReach-v0"
seeds = [7, 8, 9, 10, 11, 12]

[[tasks.variants]]
name = "nominal"

[[tasks.variants]]
name = "randomized"
env_kwargs = { randomize = true }
"""
COMPARED = ("task", "variant", "seed", "success", "return", "length", "failure")


@pytest.fixture
def live(tmp_path):
    svc = Live(tmp_path / "home")
    yield svc
    svc.close()


def _state(live, token, sub_id):
    return httpx.get(
        f"{live.url}/api/submissions/{sub_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()


def _wait(what, check, seconds, live):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {seconds} s\n{live.log_text()}")


def _key(row):
    return {k: row.get(k) for k in COMPARED} | {k: v for k, v in row.items() if k.startswith("kpi_")}


@pytest.mark.slow
def test_server_and_worker_killed_mid_job_lose_nothing(live, tmp_path):
    from agents.evaluation import evaluate

    (tmp_path / "drill.toml").write_text(SUITE)
    policies = {
        "slow": slow_policy(tmp_path / "slow.onnx", REACH_OBS, REACH_ACT, n=256, matmuls=6),
        "reach": reach_policy(tmp_path / "reach.onnx"),
    }
    # what an uninterrupted run gives, episode by episode
    truth = {
        name: {
            (r["variant"], r["seed"]): _key(r)
            for r in evaluate(str(p), tmp_path / "drill.toml", tmp_path / f"truth-{name}").rows
        }
        for name, p in policies.items()
    }
    live.admin("add-suite", str(tmp_path / "drill.toml"), "--public")
    tokens = {team: live.admin("add-team", team) for team in ("acme", "globex")}
    live.start_server()
    worker = live.start_worker()
    jobs = []
    for team, name in (("acme", "slow"), ("globex", "slow"), ("acme", "reach")):
        done = twin("submit", str(policies[name]), "--server", live.url, "--token", tokens[team], "--suite",
                    "fault-drill", "--task", "FactoryReach-v0", "--no-wait")  # fmt: skip
        assert done.returncode == 0, done.stderr
        jobs.append((team, name, done.stdout.strip().splitlines()[-1]))

    def running_with(n):
        def check():
            for team, _, sub in jobs:
                st = _state(live, tokens[team], sub)
                if st["status"] == "running" and st["episodes_done"] >= n:
                    return sub
            return None

        return check

    _wait("a team's job half-way", running_with(3), 180, live)
    live.kill(live.server)  # the server dies; its worker goes on, the queue is in the database
    live.start_server()
    victim = _wait("a job running after the restart", running_with(2), 180, live)
    live.kill(worker)  # the worker dies mid-job: its heartbeat stops
    live.start_worker()

    def all_finished():
        states = {sub: _state(live, tokens[team], sub) for team, _, sub in jobs}
        return states if all(s["status"] in ("done", "failed") for s in states.values()) else None

    states = _wait("every job finished", all_finished, 300, live)
    for team, name, sub in jobs:
        st = states[sub]
        assert st["status"] == "done", st
        rows = httpx.get(
            f"{live.url}/api/submissions/{sub}/results.json", headers={"Authorization": f"Bearer {tokens[team]}"}
        ).json()["episodes"]
        assert {(r["variant"], r["seed"]): _key(r) for r in rows} == truth[name], sub
    retried = states[victim]
    assert retried["attempts"] == 2 and "stopped answering" in retried["reason"]
    log = live.log_text()
    assert "kept from an earlier attempt" in log and "Traceback" not in log


@pytest.mark.slow
def test_twin_submit_exit_codes_and_the_embedded_worker(live, tmp_path):
    (tmp_path / "drill.toml").write_text(SUITE.replace("7, 8, 9, 10, 11, 12", "7, 8"))
    live.admin("add-suite", str(tmp_path / "drill.toml"))
    token = live.admin("add-team", "acme")
    live.start_server(workers=1)
    args = ["--server", live.url, "--suite", "fault-drill", "--task", "FactoryReach-v0"]
    good = twin("submit", str(reach_policy(tmp_path / "reach.onnx")), "--token", token, *args, timeout=300)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("done ") and "success 1.000" in good.stdout
    bad = twin("submit", str(nan_policy(tmp_path / "nan.onnx")), "--token", token, *args, timeout=300)
    assert bad.returncode == 1 and "failed: every episode failed (4)" in bad.stderr
    refused = [
        twin("submit", str(tmp_path / "reach.onnx"), "--token", "ft_" + "0" * 43, *args),
        twin("submit", str(tmp_path / "drill.toml"), "--token", token, *args),
        twin("submit", str(tmp_path / "missing.onnx"), "--token", token, *args),
        twin("submit", str(tmp_path / "reach.onnx"), "--token", token, *args[:2], "--suite", "nope", "--task", "x"),
    ]
    words = ["unknown token", "only ONNX policies", "no such file", "unknown suite 'nope'"]
    for done, w in zip(refused, words, strict=True):
        assert done.returncode == 2 and w in done.stderr
        assert len([ln for ln in done.stderr.splitlines() if ln.strip()]) == 1, done.stderr
    mine = httpx.get(f"{live.url}/api/submissions", headers={"Authorization": f"Bearer {token}"}).json()
    assert [s["status"] for s in mine["submissions"]] == ["failed", "done"]  # the refused ones are not stored


@pytest.mark.slow
def test_workers_as_ray_actors(tmp_path):
    pytest.importorskip("ray")
    from service import admin
    from service.db import open_database
    from service.settings import database_url

    home = tmp_path / "home"
    (tmp_path / "drill.toml").write_text(SUITE.replace("7, 8, 9, 10, 11, 12", "7"))
    factory = open_database(database_url(None, home))
    admin.cmd_add_suite(factory, home / "scratch", tmp_path / "drill.toml", private=False)  # queues the expert
    done = twin("worker", "--home", str(home), "--ray", "1", "--once", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 Ray actor(s) taking jobs" in done.stderr and "stopped after 1 job(s)" in done.stderr
    with factory() as s:
        from service.models import Submission

        (job,) = s.query(Submission).all()
    assert job.status == "done" and job.summary["episodes"] == 2 and job.worker.count(":") == 1
