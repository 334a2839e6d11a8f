"""The bundled expert references (``seeds/reference/<suite>-expert.json``): made, and checked.

A reference is the scripted expert's scorecard on a suite; reports show it beside a policy's
figures. Physics, experts and KPIs change, so a reference is only worth its file while the expert
still scores it. One command makes every reference again from the current code::

    python -m agents.evaluation.references                 # every suite with a reference
    python -m agents.evaluation.references smoke-v2 --workers 2

and ``check(suite)`` (what the tests run on the smoke suite) evaluates the expert now and lists
where it differs from the bundled reference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from agents.evaluation.scorecard import REFERENCE_DIR, write_reference

KPI_RTOL = 0.05
"""Relative tolerance on a KPI mean between the expert now and its reference. Episodes are
deterministic on one machine, but not to the bit across machines: the linear algebra library
picks its kernels by CPU, and contact dynamics amplify a last-bit difference. On two 2-core hosts
of the same name the arm tasks' energy and cycle-time means differed by up to 2% (lengths by half
a step) with the same episodes, successes and errors; those counts are compared exactly."""


def bundled() -> list[str]:
    """The suites that have a bundled reference."""
    return sorted(p.name.removesuffix("-expert.json") for p in REFERENCE_DIR.glob("*-expert.json"))


def make(suite: str, workers: int = 1, dest_dir: Path = REFERENCE_DIR, on_episode=None) -> Path:
    """Evaluate the expert on all of ``suite`` and keep its scorecard as the suite's reference."""
    from agents.evaluation.api import evaluate

    with tempfile.TemporaryDirectory(prefix="reference-") as tmp:
        evaluate("expert", suite, Path(tmp) / "eval", workers=workers, videos=0, on_episode=on_episode)
        return write_reference(Path(tmp) / "eval", dest_dir)


def differences(now: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[str]:
    """Where the aggregates ``now`` differ from a reference's: episodes and successes exactly,
    every KPI mean within ``KPI_RTOL``; one line each."""
    ref = {(a["task"], a["variant"]): a for a in reference}
    out = []
    for a in now:
        key = (a["task"], a["variant"])
        r = ref.pop(key, None)
        if r is None:
            out.append(f"{key[0]} / {key[1]}: not in the reference")
            continue
        for name in ("episodes", "successes", "errors"):
            if a.get(name) != r.get(name):
                out.append(f"{key[0]} / {key[1]}: {name} {a.get(name)} now, {r.get(name)} in the reference")
        for name in sorted(k for k in {*a, *r} if k.endswith("_mean")):
            x, y = a.get(name), r.get(name)
            same = (x is None and y is None) or (
                x is not None and y is not None and math.isclose(x, y, rel_tol=KPI_RTOL, abs_tol=1e-9)
            )
            if not same:
                out.append(f"{key[0]} / {key[1]}: {name} {x} now, {y} in the reference")
    out += [f"{k[0]} / {k[1]}: in the reference only" for k in ref]
    return out


def check(suite: str, workers: int = 1, out: Path | None = None) -> list[str]:
    """Evaluate the expert on ``suite`` now and compare with its bundled reference."""
    from agents.evaluation.api import evaluate

    path = REFERENCE_DIR / f"{suite}-expert.json"
    reference = json.loads(path.read_text())
    with tempfile.TemporaryDirectory(prefix="reference-check-") as tmp:
        ev = evaluate("expert", suite, out or Path(tmp) / "eval", workers=workers, videos=0)
    if ev.meta["suite_hash"] != reference["scorecard"]["suite_hash"]:
        return [f"{path.name}: made for another edition of {suite} (suite hashes differ)"]
    return differences(ev.aggregates, reference["aggregates"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m agents.evaluation.references",
        description="Make the bundled expert references again (seeds/reference/SUITE-expert.json).",
    )
    ap.add_argument("suites", nargs="*", help=f"suites (default: every one with a reference: {', '.join(bundled())})")
    ap.add_argument("--workers", type=int, default=1, help="episodes at once")
    ap.add_argument("--check", action="store_true", help="only compare the expert now with the references")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    status = 0
    for suite in args.suites or bundled():
        if args.check:
            diffs = check(suite, args.workers)
            print(f"{suite}: {'matches its reference' if not diffs else f'{len(diffs)} difference(s)'}")
            for line in diffs:
                print(f"  {line}")
            status |= bool(diffs)
        else:
            print(f"{suite}: wrote {make(suite, args.workers)}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
