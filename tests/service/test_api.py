"""The service's API with an HTTP client: submit, follow, results, leaderboard, and bad input."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from service.models import Episode, Submission
from tests.service.conftest import PRIVATE_SEEDS
from tests.service.policies import constant_policy, nan_policy, reach_policy


def _count(svc) -> int:
    with svc.factory() as s:
        return s.scalar(select(func.count()).select_from(Submission).where(~Submission.reference))


def _seen_seeds(text: str) -> list[int]:
    return [s for s in PRIVATE_SEEDS if str(s) in text]


def test_submit_follow_and_read_results_without_the_private_seeds(service, tmp_path):
    r = service.submit("acme", reach_policy(tmp_path / "reach.onnx"))
    assert r.status_code == 201, r.text
    job = r.json()
    assert len(job["id"]) == 32 and job["status"] == "queued" and job["episodes_total"] == 6
    assert job["queue_position"] == 2  # behind the expert's reference run, queued with the suite
    assert job["estimate_note"] == "no worker is running"
    assert service.work() == 2
    assert list((service.settings.scratch / "jobs").iterdir()) == []  # the database holds what is kept
    state = service.client.get(f"/api/submissions/{job['id']}", headers=service.auth("acme")).json()
    assert state["status"] == "done" and state["episodes_done"] == 6 and state["attempts"] == 1
    assert state["summary"]["success"] > 0.5 and state["summary"]["errors"] == 0

    got = service.client.get(f"/api/submissions/{job['id']}/results.json", headers=service.auth("acme"))
    rows = got.json()["episodes"]
    assert [(r["variant"], r["episode"]) for r in rows] == [
        (v, i) for v in ("nominal", "randomized") for i in (1, 2, 3)
    ]
    assert all("seed" not in r for r in rows)
    csv = service.client.get(f"/api/submissions/{job['id']}/results.csv", headers=service.auth("acme")).text
    assert csv.splitlines()[0].startswith("task,variant,episode,success")
    report = service.client.get(f"/api/submissions/{job['id']}/report.html", headers=service.auth("acme")).text
    assert "Scorecard: alliance-private" in report and "reach.onnx" in report and "expert (reference)" not in report
    assert "the suite&#x27;s seeds are private" in report or "the suite's seeds are private" in report
    suites = service.client.get("/api/suites").text
    everything = got.text + csv + report + suites + json.dumps(state)
    assert _seen_seeds(everything) == []
    # the server kept the real seeds, for a retry to resume from
    with service.factory() as s:
        kept = sorted(s.scalars(select(Episode.seed).where(Episode.submission_id == job["id"])))
    assert kept == sorted(PRIVATE_SEEDS * 2)

    board = service.client.get("/api/leaderboard/alliance-private/FactoryReach-v0").json()
    assert [e["team"] for e in board["entries"]] == ["acme"] and board["reference"]["team"] == "scripted expert"
    entry = board["entries"][0]
    assert entry["sha256"] == job["sha256"] and entry["rank"] == 1 and not entry["tied"]
    assert entry["variants"]["nominal"]["ci95"][0] <= entry["variants"]["nominal"]["success"]
    assert "randomized" in entry["robustness"]


def test_best_submission_per_team_and_ties_share_a_rank(service, tmp_path):
    good, idle = reach_policy(tmp_path / "good.onnx"), constant_policy(tmp_path / "idle.onnx")
    for team, path in (("acme", idle), ("acme", good), ("globex", good)):
        assert service.submit(team, path).status_code == 201
    service.work()
    board = service.client.get("/api/leaderboard/alliance-private/FactoryReach-v0").json()
    entries = {e["team"]: e for e in board["entries"]}
    assert set(entries) == {"acme", "globex"}
    assert entries["acme"]["success"] == entries["globex"]["success"] > 0.5  # acme's best, not its last
    assert entries["acme"]["rank"] == entries["globex"]["rank"] == 1 and entries["acme"]["tied"]
    page = service.client.get("/leaderboard/alliance-private/FactoryReach-v0").text
    assert page.count(">=1<") == 2 and "scripted expert" in page


def test_a_policy_whose_every_episode_fails_ends_failed_with_the_reason(service, tmp_path):
    job = service.submit("acme", nan_policy(tmp_path / "nan.onnx")).json()
    service.work()
    state = service.client.get(f"/api/submissions/{job['id']}", headers=service.auth("acme")).json()
    assert state["status"] == "failed"
    assert state["reason"].startswith("every episode failed (6): ") and "non-finite action" in state["reason"]
    assert _seen_seeds(state["reason"]) == []


@pytest.mark.parametrize(
    ("name", "make", "status", "words"),
    [
        ("notes.txt", lambda p: p.write_text("hello"), 415, "only ONNX policies (.onnx)"),
        ("garbage.onnx", lambda p: p.write_bytes(b"\x00not a protobuf" * 10), 422, "onnxruntime cannot load it"),
        ("empty.onnx", lambda p: p.write_bytes(b""), 422, "the file is empty"),
        ("wide.onnx", lambda p: constant_policy(p, d_in=7), 422, "input 'obs' has shape ['batch', 7]"),
        ("big.onnx", lambda p: p.write_bytes(b"\x08" * (2**20 + 1)), 413, "larger than the 1,048,576-byte limit"),
    ],
    ids=["not-onnx", "garbage", "empty", "contract", "too-large"],
)
def test_bad_uploads_are_refused_naming_the_problem_and_nothing_is_stored(service, tmp_path, name, make, status, words):
    from dataclasses import replace

    service.client.app.state.settings = replace(service.settings, max_upload_bytes=2**20)
    path = tmp_path / name
    make(path)
    r = service.submit("acme", path)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert str(tmp_path) not in r.text and "Traceback" not in r.text
    assert _count(service) == 0


def test_bad_requests_get_a_clear_status_and_store_nothing(service, tmp_path):
    good = reach_policy(tmp_path / "reach.onnx")
    r = service.submit("acme", good, suite="no-such-suite")
    assert r.status_code == 404 and "unknown suite 'no-such-suite'" in r.json()["detail"]
    r = service.submit("acme", good, task="BinSort-v1")
    assert r.status_code == 404 and "task 'BinSort-v1' is not in suite 'alliance-private'" in r.json()["detail"]
    r = service.client.post("/api/submissions", headers=service.auth("acme"), data={"suite": "alliance-private"})
    assert r.status_code == 422 and "file: Field required" in r.json()["detail"] and "task" in r.json()["detail"]
    r = service.client.post("/api/submissions", headers=service.auth("acme"), content=b"{}")
    assert r.status_code == 422
    r = service.client.post(
        "/api/submissions", headers={"Authorization": "Bearer nope"}, files={"file": ("a.onnx", b"x")}, data={}
    )
    assert r.status_code in (401, 422)
    for header, words in (
        ({}, "this needs a team token"),
        ({"Authorization": "Bearer nope"}, "malformed token"),
        ({"Authorization": "Basic abc"}, "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer ft_" + "A" * 43}, "unknown token"),
    ):
        r = service.client.get("/api/submissions", headers=header)
        assert r.status_code == 401 and words in r.json()["detail"]
    r = service.client.get("/api/submissions/not-an-id", headers=service.auth("acme"))
    assert r.status_code == 404
    r = service.client.get("/api/leaderboard/alliance-private/Nope-v0")
    assert r.status_code == 404
    assert service.client.get("/leaderboard/alliance-private/Nope-v0").status_code == 404
    assert service.client.get("/leaderboard/no-such-suite/Nope-v0").status_code == 404
    assert _count(service) == 0


def test_expired_and_rotated_tokens_are_refused(service):
    from datetime import timedelta

    from service.admin import cmd_rotate
    from service.db import transaction
    from service.models import Team, utcnow

    with transaction(service.factory) as s:
        team = s.scalar(select(Team).where(Team.name == "acme"))
        team.token_expires = utcnow() - timedelta(minutes=1)
    r = service.client.get("/api/submissions", headers=service.auth("acme"))
    assert r.status_code == 401 and "token expired on" in r.json()["detail"]
    new = cmd_rotate(service.factory, "globex", None)
    assert service.client.get("/api/submissions", headers=service.auth("globex")).status_code == 401
    assert service.client.get("/api/submissions", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    with service.factory() as s:  # only hashes are stored
        hashes = list(s.scalars(select(Team.token_hash)))
    assert new not in hashes and all(len(h) == 64 for h in hashes)


def test_daily_limit_and_one_running_job_per_team(service, tmp_path):
    from service import jobs

    path = constant_policy(tmp_path / "idle.onnx")
    for _ in range(5):
        assert service.submit("acme", path).status_code == 201
    r = service.submit("acme", path)
    assert r.status_code == 429 and "the limit is 5" in r.json()["detail"]
    assert service.submit("globex", path).status_code == 201
    # acme's five wait behind one another; globex's single job goes before acme's second
    first = jobs.claim(service.factory, "w1")
    second = jobs.claim(service.factory, "w2")
    third = jobs.claim(service.factory, "w3")
    with service.factory() as s:
        teams = [s.get(Submission, j.id).team_id for j in (first, second, third) if j is not None]
    assert len(teams) == len(set(teams)) == 3  # the expert, acme and globex: one job each
    assert jobs.claim(service.factory, "w4") is None


def test_filenames_are_names_never_paths(service, tmp_path):
    r = service.submit("acme", reach_policy(tmp_path / "p.onnx"), name="../../../etc/passwd.onnx")
    assert r.status_code == 201 and r.json()["filename"] == "passwd.onnx"
    r = service.submit("acme", reach_policy(tmp_path / "q.onnx"), name="..\\..\\x y.onnx")
    assert r.json()["filename"] == "x_y.onnx"


def test_the_organiser_adds_suites_and_sees_the_queue(service, tmp_path):
    suite = 'name = "extra"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1, 2]\n'
    r = service.client.post("/api/suites?private=false", headers=service.auth("acme"), content=suite)
    assert r.status_code == 403 and "organiser" in r.json()["detail"]
    r = service.client.post("/api/suites?private=false", headers=service.auth("organiser"), content=suite)
    assert r.status_code == 201 and r.json() == {
        "name": "extra",
        "private": False,
        "tasks": ["FactoryReach-v0"],
        "episodes": 2,
    }
    r = service.client.post("/api/suites", headers=service.auth("organiser"), content=suite)
    assert r.status_code == 422 and "exists already" in r.json()["detail"]
    bad = suite.replace('"extra"', '"other"').replace("seeds = [1, 2]", 'seeds = [1]\nlayout = "../../x.toml"')
    r = service.client.post("/api/suites", headers=service.auth("organiser"), content=bad)
    assert r.status_code == 422 and "layout" in r.json()["detail"]
    r = service.client.post("/api/suites", headers=service.auth("organiser"), content=b"\xff\xfe")
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]
    queue = service.client.get("/api/queue", headers=service.auth("organiser")).json()["jobs"]
    assert {j["team"] for j in queue} == {"scripted expert"} and len(queue) == 2
    assert service.client.get("/api/queue", headers=service.auth("acme")).status_code == 403


def test_migrations_build_exactly_the_models_schema(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.db import open_database
    from service.models import Base

    factory = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    with factory.kw["bind"].connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    open_database(f"sqlite:///{tmp_path / 'm.db'}")  # upgrading an up-to-date database changes nothing


def test_a_silent_workers_job_is_retried_once_then_failed_with_the_reason(service, tmp_path):
    from dataclasses import replace
    from datetime import timedelta

    from service import jobs
    from service.db import transaction
    from service.models import utcnow

    sub_id = service.submit("acme", reach_policy(tmp_path / "reach.onnx")).json()["id"]
    settings = replace(service.settings, heartbeat_timeout=30)

    def claim_and_go_silent(worker):
        while (job := jobs.claim(service.factory, worker)) is not None and job.id != sub_id:
            jobs.finish(service.factory, worker, job.id, {"success": 1.0}, b"")  # the expert's run
        assert job is not None
        with transaction(service.factory) as s:
            s.get(Submission, sub_id).heartbeat = utcnow() - timedelta(seconds=31)

    claim_and_go_silent("w1")
    assert jobs.reap(service.factory, settings) == [(sub_id, "requeued")]
    state = service.client.get(f"/api/submissions/{sub_id}", headers=service.auth("acme")).json()
    assert state["status"] == "queued" and state["reason"].startswith("retrying: worker w1 stopped answering")
    claim_and_go_silent("w2")
    assert jobs.reap(service.factory, settings) == [(sub_id, "failed")]
    state = service.client.get(f"/api/submissions/{sub_id}", headers=service.auth("acme")).json()
    assert state["status"] == "failed" and state["attempts"] == 2
    assert (
        "worker w2 stopped answering" in state["reason"] and "on attempt 2 of 2; not retried again" in state["reason"]
    )
    assert jobs.reap(service.factory, settings) == []
