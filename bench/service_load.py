"""A load run of the evaluation service: teams submit a mix of good, failing, slow and hostile ONNX
policies to one ``twin serve`` with embedded workers, while the server and a worker are each killed
once; every submission must end done or failed with a reason (or be refused at upload, with one),
none lost.

Prints one ``name value unit`` line per figure and writes ``service_load.json`` (every submission:
its kind, team, status, reason, queue wait and time to finish) into ``--out``.

Usage: python bench/service_load.py [--teams 5] [--policies 100] [--workers 2] [--out bench-out/service-load]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import stamp  # noqa: E402

from tests.agents.hostile_policies import memory_policy, slow_policy  # noqa: E402
from tests.service.live import Live  # noqa: E402
from tests.service.policies import REACH_ACT, REACH_OBS, constant_policy, nan_policy, reach_policy  # noqa: E402

SUITE = """name = "load-run"
description = "FactoryReach on hidden seeds, tight limits."
[[tasks]]
env_id = "FactoryReach-v0"
seeds = [90001, 90002, 90003]
[[tasks.variants]]
name = "nominal"
[[tasks.variants]]
name = "randomized"
env_kwargs = { randomize = true }
[limits]
episode_seconds = 30
call_seconds = 0.5
memory_mb = 1024
"""

# The mix, per 100 submissions: what each kind is, how many, and how it should end.
MIX = [
    ("good", 55, "done"),
    ("idle", 10, "done"),
    ("nan", 8, "failed"),
    ("slow", 5, "failed"),
    ("memory", 4, "failed"),
    ("garbage", 5, "refused"),
    ("text", 4, "refused"),
    ("wrong-shape", 5, "refused"),
    ("pickle", 4, "refused"),
]


def make(kind: str, path: Path, i: int) -> Path:
    if kind == "good":
        return reach_policy(path.with_suffix(".onnx"), gain=3.0 + (i % 9))
    if kind == "idle":
        return constant_policy(path.with_suffix(".onnx"), value=0.0)
    if kind == "nan":
        return nan_policy(path.with_suffix(".onnx"))
    if kind == "slow":
        return slow_policy(path.with_suffix(".onnx"), REACH_OBS, REACH_ACT, n=1024, matmuls=32)
    if kind == "memory":
        return memory_policy(path.with_suffix(".onnx"), REACH_OBS, REACH_ACT, gigabytes=3.0)
    if kind == "garbage":
        p = path.with_suffix(".onnx")
        p.write_bytes(bytes(range(256)) * 16)
        return p
    if kind == "text":
        p = path.with_suffix(".txt")
        p.write_text("not a policy")
        return p
    if kind == "wrong-shape":
        return constant_policy(path.with_suffix(".onnx"), d_in=REACH_OBS + 1)
    if kind == "pickle":
        p = path.with_suffix(".pt")
        p.write_bytes(b"\x80\x04\x95\x00")
        return p
    raise ValueError(kind)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teams", type=int, default=5)
    ap.add_argument("--policies", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--heartbeat-timeout", type=float, default=15.0)
    ap.add_argument("--out", default="bench-out/service-load")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    home = out / "home"
    if home.exists():
        raise SystemExit(f"{home} exists: choose a fresh --out")
    pol_dir = out / "policies"
    pol_dir.mkdir(parents=True)
    (out / "suite.toml").write_text(SUITE)

    scale = args.policies / sum(n for _, n, _ in MIX)
    plan = [(kind, want) for kind, n, want in MIX for _ in range(max(1, round(n * scale)))][: args.policies]
    teams = [f"team-{i + 1}" for i in range(args.teams)]
    work = [
        (teams[i % len(teams)], kind, want, make(kind, pol_dir / f"{i:03d}-{kind}", i))
        for i, (kind, want) in enumerate(plan)
    ]

    live = Live(home, timeout=args.heartbeat_timeout)
    live.admin("add-suite", str(out / "suite.toml"))
    tokens = {t: live.admin("add-team", t) for t in teams}
    # the daily limit is the service's default (20): 100 policies over 5 teams fit it exactly
    live.start_server(workers=args.workers)
    records: list[dict] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def submit_all(team: str) -> None:
        for owner, kind, want, path in work:
            if owner != team:
                continue
            rec = {"team": team, "kind": kind, "expected": want, "file": path.name}
            tries = 0
            while tries < 60:  # the server may be down for a moment (killed on purpose)
                tries += 1
                try:
                    with open(path, "rb") as f:
                        r = httpx.post(
                            live.url + "/api/submissions",
                            headers={"Authorization": f"Bearer {tokens[team]}"},
                            files={"file": (path.name, f)},
                            data={"suite": "load-run", "task": "FactoryReach-v0"},
                            timeout=180,
                        )
                    break
                except httpx.HTTPError:
                    time.sleep(1.0)
            else:
                rec |= {"status": "unanswered"}
                with lock:
                    records.append(rec)
                continue
            rec["attempts_to_submit"] = tries
            if r.status_code == 201:
                rec |= {"id": r.json()["id"], "status": "queued"}
            else:
                rec |= {"status": "refused", "http": r.status_code, "reason": r.json().get("detail")}
            with lock:
                records.append(rec)

    threads = [threading.Thread(target=submit_all, args=(t,)) for t in teams]
    for t in threads:
        t.start()

    def state(rec):
        try:
            r = httpx.get(
                f"{live.url}/api/submissions/{rec['id']}",
                headers={"Authorization": f"Bearer {tokens[rec['team']]}"},
                timeout=30,
            )
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def count(status):
        with lock:
            queued = [r for r in records if r.get("id")]
        states = [state(r) for r in queued]
        return sum(1 for s in states if s and s["status"] == status)

    killed = {}
    # the server, once some jobs are done; then a worker, in the middle of a job
    while count("done") < 5:
        time.sleep(2)
    live.kill(live.server)
    killed["server"] = round(time.monotonic() - t0, 1)
    print(f"# killed the server at {killed['server']} s", flush=True)
    time.sleep(3)
    live.start_server(workers=args.workers)
    while count("running") < 1:
        time.sleep(0.5)
    victims = _children(live.server.pid)
    if victims:
        import os

        os.kill(victims[0], signal.SIGKILL)
        killed["worker"] = round(time.monotonic() - t0, 1)
        print(f"# killed worker {victims[0]} at {killed['worker']} s", flush=True)
    for t in threads:
        t.join()
    accepted = [r for r in records if r.get("id")]
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        states = {r["id"]: state(r) for r in accepted}
        if all(s and s["status"] in ("done", "failed") for s in states.values()):
            break
        time.sleep(3)
    wall = time.monotonic() - t0
    for r in accepted:
        s = states[r["id"]] or {}
        r |= {k: s.get(k) for k in ("status", "reason", "attempts", "submitted", "started", "finished")}
        if s.get("summary"):
            r["success"] = s["summary"]["success"]
    live.close()

    def ts(x):
        return datetime.fromisoformat(x.rstrip("Z")) if x else None

    waits = [(ts(r["started"]) - ts(r["submitted"])).total_seconds() for r in accepted if r.get("started")]
    turns = [(ts(r["finished"]) - ts(r["submitted"])).total_seconds() for r in accepted if r.get("finished")]
    ended = [r for r in accepted if r["status"] in ("done", "failed")]
    lost = len(accepted) - len(ended)
    wrong = [r for r in records if r["status"] != r["expected"]]
    no_reason = [r for r in records if r["status"] in ("failed", "refused") and not r.get("reason")]
    figures = {
        "service_load_submissions": (len(records), "count"),
        "service_load_done": (sum(r["status"] == "done" for r in records), "count"),
        "service_load_failed": (sum(r["status"] == "failed" for r in records), "count"),
        "service_load_refused": (sum(r["status"] == "refused" for r in records), "count"),
        "service_load_lost": (lost + sum(r["status"] == "unanswered" for r in records), "count"),
        "service_load_without_reason": (len(no_reason), "count"),
        "service_load_not_as_expected": (len(wrong), "count"),
        "service_load_retried_jobs": (sum((r.get("attempts") or 0) > 1 for r in accepted), "count"),
        "service_load_jobs_per_hour": (round(3600 * len(ended) / wall, 1), "jobs/h"),
        "service_load_wall": (round(wall, 1), "s"),
        "service_load_queue_wait_p50": (round(statistics.median(waits), 1), "s"),
        "service_load_queue_wait_p95": (round(statistics.quantiles(waits, n=20)[-1], 1), "s"),
        "service_load_turnaround_p50": (round(statistics.median(turns), 1), "s"),
    }
    for name, (value, unit) in figures.items():
        print(f"{name} {value} {unit}")
    doc = {
        "provenance": stamp(),
        "setup": {"teams": args.teams, "workers": args.workers, "heartbeat_timeout_s": args.heartbeat_timeout},
        "killed_at_s": killed,
        "figures": {k: {"value": v, "unit": u} for k, (v, u) in figures.items()},
        "not_as_expected": wrong,
        "submissions": records,
    }
    (out / "service_load.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"# wrote {out / 'service_load.json'}")


if __name__ == "__main__":
    main()
