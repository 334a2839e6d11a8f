"""Where a bench's figures came from: the commit (and whether the tree had changes on top of it)
and the machine. Every ``bench/results`` file carries both."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hardware(device: str = "cpu") -> str:
    """``N x CPU model`` (and the GPU's name where ``device`` may use one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    if device != "cpu":
        try:
            import torch

            if torch.cuda.is_available():
                gpu = f", {torch.cuda.get_device_name(0)}"
        except ImportError:
            pass
    return f"{len(os.sched_getaffinity(0))} x {cpu}{gpu}"


def commit() -> str:
    """The checked-out commit, with ``+changes`` when the tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


def stamp(device: str = "cpu") -> dict[str, str]:
    """The provenance a results file records."""
    return {
        "commit": commit(),
        "machine": hardware(device),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }
