"""The upload check, run in a child process with limits: the same checks as ``twin eval`` makes
before its first episode (an ONNX file that onnxruntime loads, whose input and output fit the
task's observation and action spaces in every variant), so a bad file is refused before it is
queued, and a hostile one cannot take the server down with it.

``python -m service.check POLICY SUITE_FILE TASK`` prints one JSON line: ``{"episodes": N}`` or
``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHECK_SECONDS = 120.0
"""Wall-clock for one upload's check (loading the model and building the task's envs)."""
CHECK_MEMORY_MB = 4096
"""Address space the check may add, MB."""


class UploadRefused(ValueError):
    """The upload is not a usable policy for the task; the message says why (HTTP 422)."""


def check_upload(policy: Path, suite_file: Path, task: str, shown_as: str) -> int:
    """Check ``policy`` against ``task`` of the suite in a child process; the episodes it would run.
    Raises :class:`UploadRefused` naming the problem with the file called ``shown_as``."""
    cmd = [sys.executable, "-m", "service.check", str(policy), str(suite_file), task]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_SECONDS, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise UploadRefused(f"{shown_as}: checking it took over {CHECK_SECONDS:g} s; refused") from None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        why = "ran out of memory" if done.returncode in (-9, 137) or "MemoryError" in done.stderr else "crashed"
        raise UploadRefused(f"{shown_as}: loading it {why} (exit {done.returncode}); refused")
    out = json.loads(lines[-1])
    if "error" in out:
        raise UploadRefused(out["error"].replace(str(policy), shown_as).replace(str(suite_file), "the suite"))
    return int(out["episodes"])


def main(policy: str, suite_file: str, task: str) -> None:
    from agents.evaluation.runner import PolicyError, check_policy, policy_spec
    from agents.evaluation.suite import SuiteError, load_suite
    from agents.evaluation.workers import limit_memory

    limit_memory(CHECK_MEMORY_MB)

    try:
        loaded = load_suite(suite_file).only([task])
        spec = policy_spec(policy)
        if spec.kind != "onnx":
            raise PolicyError(f"{policy}: not an ONNX model")
        check_policy(spec, loaded)
        out = {"episodes": len(loaded.episodes())}
    except (PolicyError, SuiteError) as exc:
        out = {"error": str(exc)}
    except MemoryError:
        out = {"error": f"{policy}: loading it ran out of memory"}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
