"""The scripted experts' scorecard beside an earlier one: success and episode length per task and
variant on a suite, from ``twin eval --policy expert`` as a user runs it, next to a baseline
expert reference (a reference JSON or ``twin eval`` folder, or ``git:REV``: the bundled reference
of the suite at that revision, e.g. the experts before a change).

    python bench/experts.py [--suite standard-v2] [--baseline git:REV|PATH] [--workers 2]
                            [--out bench-out/experts]

Writes ``OUT/experts.json`` (the rows, the baseline's source, the commit and machine) and
``OUT/experts.md``; prints ``experts.<task>.<variant>.success <value> fraction`` and
``experts.<task>.<variant>.success_change <value> points`` per cell. Run again with the same
``--out``, it finishes the evaluation it finds there (``twin eval --resume``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from provenance import ROOT, stamp


def baseline(spec: str, suite: str) -> tuple[dict, str]:
    """The baseline reference's aggregates by (task, variant), and where they came from."""
    if spec.startswith("git:"):
        rev = spec[4:]
        path = f"seeds/reference/{suite}-expert.json"
        text = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        return json.loads(text), f"{path} at {rev}"
    p = Path(spec)
    doc = json.loads((p / "results.json" if p.is_dir() else p).read_text())
    return doc, str(p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="standard-v2")
    ap.add_argument("--baseline", required=True, help="git:REV (the suite's bundled reference then), or a file")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench-out/experts")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        base, source = baseline(args.baseline, args.suite)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        ap.error(f"--baseline {args.baseline}: {getattr(exc, 'stderr', '') or exc}")
    run = out / "eval"
    cmd = [sys.executable, "-m", "agents.cli", "eval", "--policy", "expert", "--suite", args.suite]
    cmd += ["--out", str(run), "--workers", str(args.workers), "--videos", "0"]
    if (run / "episodes.jsonl").exists():
        cmd.append("--resume")
    subprocess.run(cmd, cwd=ROOT, check=True)
    now = {(a["task"], a["variant"]): a for a in json.loads((run / "results.json").read_text())["aggregates"]}
    then = {(a["task"], a["variant"]): a for a in base["aggregates"]}
    rows = []
    for key, a in now.items():
        b = then.get(key)
        rows.append(
            {
                "task": key[0],
                "variant": key[1],
                "episodes": a["episodes"],
                "success": a["success_mean"],
                "success_baseline": None if b is None else b["success_mean"],
                "length_mean": a["length_mean"],
                "length_mean_baseline": None if b is None else b["length_mean"],
            }
        )
        tag = f"experts.{key[0]}.{key[1]}"
        print(f"{tag}.success {a['success_mean']:.3g} fraction", flush=True)
        if b is not None:
            print(f"{tag}.success_change {100 * (a['success_mean'] - b['success_mean']):+.0f} points", flush=True)
    doc = {"suite": args.suite, "baseline": source, **stamp(), "rows": rows}
    (out / "experts.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "experts.md").write_text(table(doc))
    return 0


def table(doc: dict) -> str:
    """The Markdown table of an ``experts.json``."""
    md = [
        "| task | variant | episodes | success | success before | change (points) | length (steps) | "
        "length before (steps) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["rows"]:
        before, length_before = r["success_baseline"], r["length_mean_baseline"]
        change = "-" if before is None else f"{100 * (r['success'] - before):+.0f}"
        before = "-" if before is None else f"{before:.2f}"
        length_before = "-" if length_before is None else f"{length_before:.0f}"
        md.append(
            f"| {r['task']} | {r['variant']} | {r['episodes']} | {r['success']:.2f} | {before} | {change} | "
            f"{r['length_mean']:.0f} | {length_before} |"
        )
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    sys.exit(main())
