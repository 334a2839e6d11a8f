"""A real service in processes: ``twin serve`` and ``twin worker`` as users start them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twin(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, cwd=ROOT, **kw)


class Live:
    """``twin serve`` (no embedded workers unless asked) and any number of ``twin worker``s."""

    def __init__(self, home: Path, db: str | None = None, timeout: float = 5.0) -> None:
        self.home, self.port, self.timeout = home, free_port(), timeout
        self.db = ["--db", db] if db else []
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (kept by the process)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "agents.cli", *args, "--home", str(self.home), *self.db]
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def start_server(self, workers: int = 0) -> None:
        self.server = self._spawn(
            "serve", "serve", "--port", str(self.port), "--workers", str(workers),
            "--heartbeat-timeout", str(self.timeout), "--log-level", "warning",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/suites", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.server.poll() is not None:
                raise RuntimeError(f"twin serve exited {self.server.returncode}: {self.log_text()}")
            time.sleep(0.3)
        raise RuntimeError("twin serve did not answer within 60 s")

    def start_worker(self) -> subprocess.Popen:
        p = self._spawn("worker", "worker", "--heartbeat-timeout", str(self.timeout))
        self.workers.append(p)
        return p

    def admin(self, *args: str) -> str:
        done = twin("admin", "--home", str(self.home), *self.db, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def kill(self, p: subprocess.Popen) -> None:
        p.send_signal(signal.SIGKILL)
        p.wait()

    def log_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))

    def close(self) -> None:
        for p in [*self.workers, self.server]:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.server]:
            if p is not None:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
