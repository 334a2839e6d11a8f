"""``twin serve``, ``twin worker``, ``twin admin`` and ``twin submit``: the evaluation service."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from agents.cli.common import UsageError, _require, _require_command, err, out


def add_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        help="the database: sqlite:///FILE, a file path (SQLite) or postgresql://USER:PASS@HOST/NAME "
        "(default: SQLite in --home)",
    )
    p.add_argument(
        "--home",
        metavar="DIR",
        default="twin-service",
        help="the default SQLite database and this machine's scratch space (twin-service)",
    )


def _settings(args, **over):
    _require_command(args.command)
    from service.settings import Settings, database_url

    home = Path(args.home)
    kw = {"db": database_url(args.db, home), "scratch": (home / "scratch").resolve()}
    for flag, key in (("heartbeat_timeout", "heartbeat_timeout"), ("episode_workers", "episode_workers")):
        value = getattr(args, flag, None)
        if value is not None:
            kw[key] = value
    if getattr(args, "daily_limit", None) is not None:
        kw["daily_submissions"] = args.daily_limit
    if getattr(args, "max_upload_mb", None) is not None:
        kw["max_upload_bytes"] = int(args.max_upload_mb * 2**20)
    kw.update(over)
    if kw.get("heartbeat_timeout", 60) <= 0 or kw.get("episode_workers", 1) < 1:
        raise UsageError("--heartbeat-timeout must be above 0 and --episode-workers at least 1")
    if kw.get("daily_submissions", 1) < 1 or kw.get("max_upload_bytes", 1) < 1:
        raise UsageError("--daily-limit and --max-upload-mb must be above 0")
    return Settings(**kw)


def _open(settings):
    from service.db import DatabaseError, open_database

    try:
        return open_database(settings.db)
    except DatabaseError as exc:
        raise UsageError(str(exc)) from None


def _worker_cmd(args, parent: int) -> list[str]:
    cmd = [sys.executable, "-m", "agents.cli", "worker", "--home", args.home, "--parent-pid", str(parent)]
    if args.db:
        cmd += ["--db", args.db]
    if args.heartbeat_timeout is not None:
        cmd += ["--heartbeat-timeout", str(args.heartbeat_timeout)]
    return cmd


class _Embedded:
    """The workers ``twin serve`` runs beside itself: started, watched, restarted if one dies."""

    def __init__(self, args, n: int) -> None:
        self.cmd = _worker_cmd(args, os.getpid())
        self.procs: list[subprocess.Popen] = [self._start() for _ in range(n)]
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._run, daemon=True)
        self._watch.start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(self.cmd)

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is not None and not self._stop.is_set():
                    err.print(f"twin serve: worker {p.pid} exited ({code}); starting another")
                    self.procs[i] = self._start()

    def close(self) -> None:
        self._stop.set()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()  # SIGTERM: the worker puts its job back in the queue
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def cmd_serve(args) -> int:
    settings = _settings(args)
    if not 0 <= args.workers <= 64:
        raise UsageError(f"--workers {args.workers}: expected 0 to 64")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1 to 65535")
    factory = _open(settings)
    import uvicorn

    from service.app import create_app
    from service.db import safe_url

    app = create_app(settings, factory)
    out.print(
        f"twin serve: http://{args.host}:{args.port}/ on {safe_url(settings.db)}, {args.workers} embedded worker(s)",
        markup=False,
        highlight=False,
    )
    embedded = _Embedded(args, args.workers) if args.workers else None

    def _term(_sig, _frame):  # uvicorn re-raises SIGTERM after its shutdown: end here, workers first
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _term)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        if embedded is not None:
            embedded.close()
    return 0


def cmd_worker(args) -> int:
    settings = _settings(args)
    factory = _open(settings)
    from service.worker import serve_jobs

    def log(line: str) -> None:
        err.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False, soft_wrap=True)

    if args.ray is not None:
        if args.ray < 1:
            raise UsageError(f"--ray {args.ray}: expected at least 1 actor")
        _require("twin worker --ray", "ray", ["ray"])
        from service.worker import serve_on_ray

        serve_on_ray(settings, args.ray, once=args.once, log=log)
        return 0
    serve_jobs(factory, settings, once=args.once, log=log, parent=args.parent_pid)
    return 0


def cmd_admin(args) -> int:
    settings = _settings(args)
    factory = _open(settings)
    from service import admin

    try:
        if args.action == "add-team":
            token = admin.cmd_add_team(factory, args.name, args.organiser, args.days)
            err.print(f"team {args.name!r} added; its token (shown this once, only its hash is kept):", markup=False)
            print(token)
        elif args.action == "rotate-token":
            token = admin.cmd_rotate(factory, args.name, args.days)
            err.print(f"team {args.name!r}: new token (the old one no longer works):", markup=False)
            print(token)
        elif args.action == "teams":
            from rich.table import Table

            rows = admin.cmd_teams(factory)
            t = Table("team", "role", "created (UTC)", "token expires (UTC)", "submissions")
            for r in rows:
                t.add_row(*[str(v) for v in r.values()])
            out.print(t)
        elif args.action == "add-suite":
            got = admin.cmd_add_suite(factory, settings.scratch, Path(args.file), not args.public)
            kind = "private" if got["private"] else "public"
            out.print(f"suite {got['name']!r} added ({kind}); the expert is queued on {', '.join(got['tasks'])}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_submit(args) -> int:
    _require_command("submit")
    from agents.cli.common import _progress
    from service.client import Refused, follow, submit

    try:
        got = submit(args.server, args.token, Path(args.policy), args.suite, args.task)
    except Refused as exc:
        err.print(f"twin submit: error: refused: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    where = f"{args.server.rstrip('/')}/submissions/{got['id']}"
    err.print(f"submitted {got['id']}: place {got.get('queue_position')} in the queue; {where}", markup=False)
    if args.no_wait:
        print(got["id"])
        return 0
    with _progress() as prog:
        bar = prog.add_task("queued", total=got.get("episodes_total") or None, rate="")

        def update(state: dict) -> None:
            status = state["status"]
            if status == "queued":
                prog.update(bar, description=f"queued (place {state.get('queue_position')})")
            elif status in ("running", "done"):
                prog.update(
                    bar,
                    description=status,
                    total=state.get("episodes_total") or None,
                    completed=state.get("episodes_done", 0),
                )
            else:
                prog.update(bar, description=status)

        try:
            final = follow(args.server, args.token, got["id"], update)
        except Refused as exc:
            err.print(f"twin submit: error: {exc}", markup=False, highlight=False, soft_wrap=True)
            return 2
    if final["status"] == "failed":
        err.print(f"twin submit: failed: {final.get('reason')}", markup=False, highlight=False, soft_wrap=True)
        return 1
    s = final.get("summary") or {}
    lo, hi = s.get("success_ci95", [0, 0])
    print(f"done {got['id']}: success {s.get('success', 0):.3f} [{lo:.3f}, {hi:.3f}] over {s.get('episodes')} episodes")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="run the evaluation service: API, pages, queue and embedded workers")
    add_db_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")
    p.add_argument("--workers", type=int, default=1, help="embedded workers to run beside the server (1; 0 for none)")
    p.add_argument("--daily-limit", type=int, metavar="N", help="submissions per team in any 24 hours (20)")
    p.add_argument("--max-upload-mb", type=float, metavar="MB", help="largest policy file accepted (64)")
    p.add_argument(
        "--heartbeat-timeout", type=float, metavar="S", help="seconds of silence before a worker's job is taken back"
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("worker", help="run evaluation jobs from the service's database queue")
    add_db_args(p)
    p.add_argument("--once", action="store_true", help="stop when the queue is empty")
    p.add_argument("--episode-workers", type=int, metavar="N", help="episodes of a job run at once (1)")
    p.add_argument(
        "--heartbeat-timeout", type=float, metavar="S", help="seconds of silence before a worker's job is taken back"
    )
    p.add_argument(
        "--ray",
        type=int,
        metavar="N",
        help="run N workers as Ray actors (the cluster at RAY_ADDRESS, else a local one; needs [ray])",
    )
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("admin", help="the service's teams, tokens and suites")
    add_db_args(p)
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = asub.add_parser("add-team", help="add a team and print its token once")
    q.add_argument("name")
    q.add_argument("--organiser", action="store_true", help="may add suites and see the queue")
    q.add_argument("--days", type=float, help="the token's lifetime in days (default: no expiry)")
    q = asub.add_parser("rotate-token", help="give a team a new token (the old one stops working)")
    q.add_argument("name")
    q.add_argument("--days", type=float, help="the token's lifetime in days (default: no expiry)")
    asub.add_parser("teams", help="list the teams")
    q = asub.add_parser("add-suite", help="add a suite (private: its seeds never leave the server)")
    q.add_argument("file", metavar="SUITE.toml")
    q.add_argument("--public", action="store_true", help="a suite whose seeds may be known")
    p.set_defaults(fn=cmd_admin)

    p = sub.add_parser("submit", help="submit an ONNX policy to an evaluation service and follow its job")
    p.add_argument("policy", metavar="POLICY.onnx")
    p.add_argument("--server", required=True, metavar="URL", help="the service, e.g. http://127.0.0.1:8000")
    p.add_argument("--token", required=True, help="the team's token")
    p.add_argument("--suite", required=True)
    p.add_argument("--task", required=True, metavar="ENV_ID")
    p.add_argument("--no-wait", action="store_true", help="print the job's id and return without following it")
    p.set_defaults(fn=cmd_submit)
