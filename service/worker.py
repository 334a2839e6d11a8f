"""``twin worker``: take jobs from the database queue and run them with the evaluation library.

A job's episodes run under the suite's limits in the evaluation's own worker processes; each
finished episode is a database row before the next is counted, so a worker that dies loses only
the episodes it was running, and the next worker (here or on another machine) resumes the rest.
A worker stopped by Ctrl-C or SIGTERM puts its job back in the queue first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker

from service import jobs
from service.db import transaction
from service.models import Submission
from service.results import public_meta, public_rows, summarise
from service.settings import Settings
from service.suites import UnknownSuite, resolve


class Stopped(Exception):
    """The worker was asked to stop (its job went back to the queue)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heart:
    """Beats for the worker (and its job) every ``period`` seconds on a thread of its own, so a
    long episode does not look like a dead worker."""

    def __init__(self, factory: sessionmaker, name: str, period: float) -> None:
        self.factory, self.name, self.period = factory, name, period
        self.job: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with contextlib.suppress(Exception):  # the database away for a moment: the next beat tries again
                jobs.beat(self.factory, self.name, self.job)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _prepare(folder: Path, sub: Submission, rows: list[dict[str, Any]]) -> bool:
    """A fresh scratch folder for the job, holding what the database kept of an earlier attempt
    (its ``run.json`` and finished episodes), so the evaluation resumes; True if it does."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if not (sub.identity and rows):
        return False
    (folder / "eval").mkdir()
    (folder / "eval" / "run.json").write_text(json.dumps(sub.identity, indent=2) + "\n")
    with open(folder / "eval" / "episodes.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return True


def run_job(factory: sessionmaker, settings: Settings, sub: Submission, name: str, heart: Heart, log) -> str:
    """Run one claimed job to its end; returns its final status. Its scratch folder is removed
    afterwards (the database holds what is kept), unless the worker itself failed in it."""
    folder = settings.scratch / "jobs" / sub.id
    status = _run_job(factory, settings, sub, name, heart, log, folder)
    shutil.rmtree(folder, ignore_errors=True)
    return status


def _run_job(factory, settings: Settings, sub: Submission, name: str, heart: Heart, log, folder: Path) -> str:
    from agents.evaluation import EvalError, EvalInterrupted, evaluate

    with factory() as s:
        policy = s.get(Submission, sub.id).policy
        try:
            loaded, private = resolve(s, sub.suite, settings.scratch)
        except (UnknownSuite, ValueError) as exc:
            jobs.fail(factory, sub.id, f"the suite cannot be loaded any more: {exc}", worker=name)
            return "failed"
    kept = jobs.episodes(factory, sub.id)
    resume = _prepare(folder, sub, kept)
    if sub.reference:
        target = "expert"
    else:
        target = str(folder / "policy.onnx")
        Path(target).write_bytes(policy)
    order = loaded.only([sub.task]).episodes()
    seeds = {s for _, _, s in order}

    def started(total: int, already: int) -> None:
        identity = json.loads((folder / "eval" / "run.json").read_text())
        jobs.set_identity(factory, sub.id, identity, total)
        log(f"job {sub.id}: {sub.task} on {sub.suite}, {total} episodes ({already} kept from an earlier attempt)")

    def episode(row: dict[str, Any]) -> None:
        if not jobs.keep_episode(factory, name, sub.id, row):
            raise Stopped(f"job {sub.id} was taken back from this worker")

    heart.job = sub.id
    try:
        result = evaluate(
            target,
            loaded,
            folder / "eval",
            tasks=[sub.task],
            workers=settings.episode_workers,
            videos=0 if private else settings.videos,
            resume=resume,
            on_start=started,
            on_episode=episode,
            notify=lambda line: log(f"job {sub.id}: {_scrub(line, seeds, private)}"),
        )
    except EvalInterrupted:
        jobs.release(factory, name, sub.id, "the worker running it was stopped; queued again, its episodes kept")
        shutil.rmtree(folder, ignore_errors=True)
        raise Stopped(f"stopped in the middle of job {sub.id}; it is queued again") from None
    except EvalError as exc:
        reason = _scrub(str(exc).replace(str(folder / "policy.onnx"), sub.filename), seeds, private)
        jobs.fail(factory, sub.id, reason, worker=name)
        log(f"job {sub.id}: failed: {reason}")
        return "failed"
    except Stopped:
        log(f"job {sub.id}: taken back (this worker's heartbeat was late); left to the worker that has it")
        return "lost"
    finally:
        heart.job = None
    rows = public_rows(result.rows, order, private, key="seed")  # the report labels it 'episode'
    summary = summarise(result.rows)
    if summary["errors"] == summary["episodes"]:
        reasons = sorted({r.get("failure") or "" for r in rows})
        reason = f"every episode failed ({summary['episodes']}): " + "; ".join(r for r in reasons[:3] if r)
        jobs.fail(factory, sub.id, reason[:2000], worker=name, summary=summary)
        log(f"job {sub.id}: failed: {reason[:200]}")
        return "failed"
    report = _report(factory, folder, sub, result, rows, private)
    if not jobs.finish(factory, name, sub.id, summary, report):
        log(f"job {sub.id}: finished, but it had been taken back from this worker; its result is not kept")
        return "lost"
    log(f"job {sub.id}: done, success {summary['success']:.2f} over {summary['episodes']} episodes")
    return "done"


def _scrub(text: str, seeds: set[int], private: bool) -> str:
    from service.results import scrub

    return scrub(text, seeds) if private else text


def _report(factory, folder: Path, sub: Submission, result, rows, private: bool) -> bytes:
    """The team's report: as ``twin eval`` writes it, with the policy named by its upload, the
    expert's run on the same suite beside it, and a private suite's seeds left out."""
    from sqlalchemy import select

    from agents.evaluation.report import write_report
    from agents.evaluation.scorecard import load_reference
    from agents.evaluation.store import list_videos

    reference = None
    with factory() as s:
        ref = s.scalars(
            select(Submission)
            .where(Submission.suite == sub.suite, Submission.task == sub.task, Submission.reference)
            .where(Submission.status == "done")
            .order_by(Submission.finished.desc())
        ).first()
        if ref is not None and not sub.reference:
            reference = {
                "scorecard": {"suite": sub.suite, "git_commit": "", "created": f"{ref.finished:%Y-%m-%d %H:%M} UTC"},
                "aggregates": ref.summary["aggregates"],
            }
    if reference is None and not private and not sub.reference:
        reference = load_reference(result.meta)
    out = folder / "public"
    meta = public_meta(result.meta, private, sub.filename)
    videos = {} if private else list_videos(folder / "eval")
    write_report(out, meta, result.aggregates, rows, videos, reference, hide_seeds=private)
    return (out / "report.html").read_bytes()


def serve_jobs(
    factory: sessionmaker,
    settings: Settings,
    *,
    once: bool = False,
    log: Callable[[str], None] = print,
    parent: int | None = None,
) -> int:
    """The worker's loop: reap silent workers' jobs, claim one, run it; until stopped (or, with
    ``once``, until the queue is empty). Returns the number of jobs run."""
    name = worker_name()
    jobs.register(factory, name)
    heart = Heart(factory, name, settings.heartbeat_seconds)
    log(f"worker {name}: waiting for jobs")
    count = 0
    previous = signal.getsignal(signal.SIGTERM)

    def _term(_sig, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _term)
    try:
        while True:
            if parent is not None and os.getppid() != parent:
                log(f"worker {name}: the server that started it is gone; stopping")
                break
            for job_id, what in jobs.reap(factory, settings):
                log(f"worker {name}: job {job_id} had a silent worker: {what}")
            sub = jobs.claim(factory, name)
            if sub is None:
                if once:
                    break
                time.sleep(settings.heartbeat_seconds)
                continue
            count += 1
            try:
                run_job(factory, settings, sub, name, heart, log)
            except KeyboardInterrupt:  # between the claim and the evaluation's own handling
                jobs.release(factory, name, sub.id, "the worker running it was stopped; queued again")
                raise
            except Stopped:
                raise
            except Exception as exc:  # a bug or the database away: the job fails with the reason, the worker goes on
                log(f"job {sub.id}: internal error:\n{traceback.format_exc()}")
                with contextlib.suppress(Exception):
                    jobs.fail(factory, sub.id, f"internal error in the worker: {type(exc).__name__}: {exc}"[:500])
    except (Stopped, KeyboardInterrupt) as exc:
        log(f"worker {name}: stopping ({str(exc) or 'interrupted'})")
    finally:
        heart.close()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception), transaction(factory) as s:
            from service.models import Worker

            w = s.get(Worker, name)
            if w is not None:
                s.delete(w)
    return count


class _JobActor:
    """A worker as a Ray actor: the same loop, on a cluster's CPU (one per actor)."""

    def run(self, settings: Settings, once: bool) -> tuple[str, int]:
        import sys

        from service.db import open_database

        def log(line: str) -> None:  # into the actor's log on its node
            print(line, file=sys.stderr, flush=True)

        n = serve_jobs(open_database(settings.db), settings, once=once, log=log)
        return worker_name(), n


def serve_on_ray(settings: Settings, actors: int, once: bool = False, log: Callable[[str], None] = print) -> int:
    """Run ``actors`` workers as Ray actors (the cluster at ``RAY_ADDRESS``, else a local one);
    each needs the database to be reachable from its node. Returns the jobs they ran."""
    import ray

    from agents.collect.ray_pool import ensure_ray

    started = ensure_ray(actors)
    try:
        remote = ray.remote(num_cpus=1)(_JobActor)
        pool = [remote.remote() for _ in range(actors)]
        log(f"{actors} Ray actor(s) taking jobs from the queue")
        pending = {a.run.remote(settings, once): a for a in pool}
        total = 0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                try:
                    name, n = ray.get(ref)
                    log(f"Ray worker {name} stopped after {n} job(s)")
                    total += n
                except ray.exceptions.RayError as exc:  # the actor died: its job is reaped and retried
                    log(f"a Ray worker died ({type(exc).__name__}); its job is taken back after the heartbeat timeout")
        return total
    finally:
        if started:
            ray.shutdown()
