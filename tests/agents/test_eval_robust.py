"""twin eval under stress: limits on hostile policies, dead workers, Ctrl-C, resume, locked and
existing output folders, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.cli import run as cli
from agents.evaluation.runner import policy_spec, run_suite
from agents.evaluation.store import ResultsError, ResultsFolder
from agents.evaluation.suite import load_suite
from agents.evaluation.workers import EpisodeWorkers, Limits
from tests.agents.hostile_policies import memory_policy, slow_policy

SUITE = """
name = "robust"
[[tasks]]
env_id = "FactoryReach-v0"
seeds = [1, 2, 3, 4, 5, 6]
"""
D_IN, D_OUT = 12, 3  # FactoryReach-v0's flat observation and action sizes


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def _eval(tmp_path, *extra: str, policy: str = "random", out: str = "out") -> int:
    args = ["eval", "--policy", policy, "--suite", str(_suite(tmp_path)), "--out", str(tmp_path / out)]
    return cli([*args, "--videos", "0", *extra])


def _rows(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["episodes"]


def test_a_slow_policy_fails_each_episode_at_the_call_limit_and_the_evaluation_goes_on(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    slow = slow_policy(tmp_path / "slow.onnx", D_IN, D_OUT, n=1024, matmuls=64)  # seconds per call
    t0 = time.perf_counter()
    assert _eval(tmp_path, "--call-seconds", "0.3", "--workers", "2", policy=str(slow)) == 1
    elapsed = time.perf_counter() - t0
    rows = _rows(tmp_path / "out")
    assert len(rows) == 6 and all(r["error"] and not r["success"] for r in rows)
    assert all("0.3 s limit" in r["failure"] for r in rows), [r["failure"] for r in rows]
    assert elapsed < 60  # each episode stops at its first call, not after the whole policy ran
    assert "could not run to their end" in capsys.readouterr().err


def test_a_policy_allocating_gigabytes_fails_its_episodes_within_the_memory_limit(tmp_path):
    pytest.importorskip("onnxruntime")
    hog = memory_policy(tmp_path / "hog.onnx", D_IN, D_OUT, gigabytes=6.0)
    assert _eval(tmp_path, "--memory-mb", "1024", policy=str(hog)) == 1
    rows = _rows(tmp_path / "out")
    assert all(r["error"] for r in rows)
    assert all("memory limit: 1024 MB" in r["failure"] or "out of memory" in r["failure"] for r in rows)


def test_a_killed_worker_is_replaced_and_its_episode_retried_once(tmp_path):
    suite = load_suite(_suite(tmp_path))
    jobs = [(e, v, s, suite.env_kwargs(e, v), False) for e, v, s in suite.episodes()]
    notes, results = [], {}
    pool = EpisodeWorkers(policy_spec("random"), 2, Limits(), notes.append)
    killed = []

    def on_result(i, res):
        results[i] = res["row"]
        if not killed:  # kill a busy worker once the first episode is in
            victim = next(w for w in pool.workers if w.job is not None)
            os.kill(victim.proc.pid, signal.SIGKILL)
            killed.append(victim.job)

    pool.run(jobs, on_result)
    assert sorted(results) == list(range(6))
    assert not any(r["error"] for r in results.values()), results  # the retry finished the episode
    assert any("killed by SIGKILL" in n and "retrying" in n for n in notes), notes
    reference, _ = run_suite(policy_spec("random"), suite, workers=1)
    assert [results[i] for i in range(6)] == reference  # the retried episode gives the same row


def test_an_episode_whose_worker_dies_twice_fails_with_the_reason(tmp_path, monkeypatch):
    suite = load_suite(_suite(tmp_path))
    jobs = [(e, v, s, suite.env_kwargs(e, v), False) for e, v, s in suite.episodes()[:2]]
    import agents.evaluation.runner as runner

    real = runner.run_episode

    def crash_on_seed_2(spec, env_id, variant, seed, *rest, **kw):
        if seed == 2:
            os._exit(3)
        return real(spec, env_id, variant, seed, *rest, **kw)

    monkeypatch.setattr(runner, "run_episode", crash_on_seed_2)  # the fork inherits it
    notes, rows = [], {}
    EpisodeWorkers(policy_spec("random"), 1, Limits(), notes.append).run(jobs, lambda i, r: rows.update({i: r["row"]}))
    assert rows[0]["error"] is False
    assert rows[1]["error"] and "died twice" in rows[1]["failure"] and "exit status 3" in rows[1]["failure"]
    assert len(notes) == 2


def test_results_are_kept_as_episodes_end_and_resume_runs_only_the_missing_ones(tmp_path):
    assert _eval(tmp_path) == 0
    full = _rows(tmp_path / "out")
    # a run cut short: three rows kept, the last one half-written
    lines = (tmp_path / "out" / "episodes.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "out" / "episodes.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    for name in ("results.json", "results.parquet", "report.html"):
        (tmp_path / "out" / name).unlink()
    assert _eval(tmp_path) == 2  # existing results are not overwritten silently
    assert _eval(tmp_path, "--resume") == 0
    assert _rows(tmp_path / "out") == full
    assert len((tmp_path / "out" / "episodes.jsonl").read_text().splitlines()) == 6
    assert _eval(tmp_path, "--overwrite") == 0 and _rows(tmp_path / "out") == full


def test_resume_refuses_another_evaluation(tmp_path, capsys):
    assert _eval(tmp_path) == 0
    capsys.readouterr()
    assert _eval(tmp_path, "--resume", policy="expert") == 2
    assert "holds another evaluation (policy differ)" in capsys.readouterr().err
    assert _eval(tmp_path, "--resume", "--overwrite") == 2


def test_one_output_folder_takes_one_evaluation_at_a_time(tmp_path):
    identity = {"suite_hash": "a"}
    busy = pytest.raises(ResultsError, match=r"another twin eval is writing it \(pid \d+\)")
    with ResultsFolder(tmp_path / "o", identity), busy:
        ResultsFolder(tmp_path / "o", identity, overwrite=True)
    with ResultsFolder(tmp_path / "o", identity, resume=True):  # released when the first one closed
        pass


def _wait_for(predicate, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: no procps needed)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_evaluation_keeps_its_episodes_and_exits_promptly(tmp_path, sig):
    text = SUITE.replace("seeds = [1, 2, 3, 4, 5, 6]", f"seeds = {list(range(200))}")
    cmd = [sys.executable, "-m", "agents.cli", "eval", "--policy", "random", "--suite", str(_suite(tmp_path, text))]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "out"), "--videos", "0", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    rows = tmp_path / "out" / "episodes.jsonl"
    _wait_for(lambda: rows.exists() and len(rows.read_text().splitlines()) >= 3)
    workers = _children(proc.pid)
    os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole process group
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert "are kept in" in err and "--resume" in err, err
    assert "Traceback" not in err
    kept = len(rows.read_text().splitlines())
    assert 3 <= kept < 200
    _wait_for(lambda: not any(_alive(w) for w in workers), 10)


def test_killing_the_evaluation_kills_its_workers(tmp_path):
    text = SUITE.replace("seeds = [1, 2, 3, 4, 5, 6]", f"seeds = {list(range(200))}")
    cmd = [sys.executable, "-m", "agents.cli", "eval", "--policy", "random", "--suite", str(_suite(tmp_path, text))]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "out"), "--videos", "0", "--workers", "2"], stderr=subprocess.DEVNULL
    )
    rows = tmp_path / "out" / "episodes.jsonl"
    _wait_for(lambda: rows.exists() and len(rows.read_text().splitlines()) >= 2)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    proc.kill()
    proc.wait()
    _wait_for(lambda: not any(_alive(w) for w in workers), 10)  # no orphans
