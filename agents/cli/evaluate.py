"""``twin eval``, ``report`` and ``compare``: policies scored on the fixed suites."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from agents.cli.common import (
    UsageError,
    _episode_ticker,
    _in_path,
    _observation,
    _out_dir,
    _out_file,
    _progress,
    _require,
    _require_command,
    _suite_exists,
    _telemetry_dir,
    err,
    out,
)


def cmd_eval(args: argparse.Namespace) -> int:
    from agents.common.signals import StopRequest
    from agents.evaluation.api import EvalError, EvalInterrupted, evaluate

    _require_command("eval")
    if args.policy.lower().endswith(".onnx"):
        _require("twin eval of an ONNX policy", "eval", ["onnxruntime"])
    if args.backend == "ray":
        _require("twin eval --backend ray", "ray", ["ray"])
    if args.policy not in ("expert", "expert-observed", "random"):
        _in_path("--policy", args.policy, "policy file or folder")
    _suite_exists(args.suite)
    if args.reference:
        _in_path("--reference", args.reference, "reference file or folder")
    _out_dir("--out", args.out)
    if args.telemetry:
        _telemetry_dir(args.telemetry, args.telemetry_rate)
        held = (
            [p.name for p in Path(args.telemetry).iterdir() if p.name != ".parts"]
            if Path(args.telemetry).is_dir()
            else []
        )
        if held and not args.resume:
            raise UsageError(f"--telemetry {args.telemetry}: already holds {held[0]}; name a new folder")
    elif args.telemetry_rate is not None:
        raise UsageError("--telemetry-rate needs --telemetry DIR")
    observation = _observation(args)
    with _progress() as prog:
        bar: dict = {}

        def start(total: int, kept: int) -> None:
            if kept:
                err.print(f"resuming: {kept} of {total} episodes already in {args.out}/episodes.jsonl", highlight=False)
            bar["task"] = prog.add_task(
                escape(f"eval {args.suite} [{args.policy}]"), total=total, completed=kept, rate=""
            )
            bar["tick"] = _episode_ticker(prog, bar["task"], per_minute=True)

        def notify(line: str) -> None:
            err.print(f"twin: {line}", markup=False, highlight=False, soft_wrap=True)

        stop = StopRequest(immediate=True)
        try:
            with stop:
                ev = evaluate(
                    args.policy,
                    args.suite,
                    args.out,
                    workers=args.workers,
                    backend=args.backend,
                    videos=args.videos,
                    tasks=args.task,
                    variants=args.variant,
                    resume=args.resume,
                    overwrite=args.overwrite,
                    episode_seconds=args.episode_seconds,
                    call_seconds=args.call_seconds,
                    memory_mb=args.memory_mb,
                    reference=args.reference,
                    on_start=start,
                    on_episode=lambda _row: bar["tick"](),
                    notify=notify,
                    telemetry=args.telemetry,
                    telemetry_rate=args.telemetry_rate,
                    observation=observation,
                )
        except EvalError as exc:
            raise UsageError(str(exc)) from None
        except EvalInterrupted as exc:
            prog.stop()
            err.print(str(exc), highlight=False)
            return stop.exit_code
    rate = ev.meta["episodes_per_minute"]
    rate = f", {rate:.1f} episodes/min" if rate else ""
    seen = ev.meta.get("observation")
    seen = f" seeing {seen['obs_mode']}" if isinstance(seen, dict) else ""
    out.print(
        _scorecard_table(
            f"{ev.suite}: {ev.policy.kind} policy{seen}, {ev.episodes} episodes{rate}", ev.aggregates, ev.reference
        )
    )
    out.print(f"wrote {ev.out}/results.json, results.parquet and report.html", highlight=False)
    if ev.meta.get("telemetry"):
        made = [g for g in ev.meta["telemetry"] if g["folder"]]
        out.print(
            f"telemetry of {sum(g['episodes'] for g in made)} episodes in {len(made)} folders under {args.telemetry}",
            highlight=False,
        )
    if ev.errors:
        err.print(
            f"twin: {ev.errors} of {ev.episodes} episode(s) could not run to their end (policy faults, limits, dead "
            f"workers); their reasons are in the failure column and the report",
            highlight=False,
        )
        return 1
    return 0


def _pc(v: float) -> str:
    """A percentage to one decimal, without a trailing .0 (97, 97.5)."""
    return f"{v:.1f}".removesuffix(".0")


def _scorecard_table(title: str, aggs: list[dict], reference: dict | None) -> Table:
    """The terminal scorecard: success per task and variant, its interval and the robustness
    ratio (percent and ratios, units in the headers), with the expert's success where known."""
    from agents.evaluation.scorecard import ROBUSTNESS_VARIANTS, headline

    heads = {h["task"]: h for h in headline(aggs)}
    refs = {(a["task"], a["variant"]): a for a in reference["aggregates"]} if reference else {}
    cols = ["task", "variant", "success % [95% CI]", "x nominal"]
    cols += ["expert %"] if reference else []
    cols += ["failed"]
    caption = "success: % of episodes; x nominal: success over the nominal cell's; failed: episodes"
    table = Table(title=title, caption=caption)
    for col in cols:
        table.add_column(
            col,
            justify="left" if col in ("task", "variant") else "right",
            no_wrap=col in ("task", "variant"),
            # headers wrap between words, never inside one; the success cell stays on one line
            min_width=14 if col.startswith("success") else max(len(w) for w in col.split()),
        )
    for a in aggs:
        ratio = heads[a["task"]]["robustness"].get(a["variant"]) if a["variant"] in ROBUSTNESS_VARIANTS else None
        ref = refs.get((a["task"], a["variant"]))
        pct = [_pc(100 * a[k]) for k in ("success_mean", "success_ci95_low", "success_ci95_high")]
        row = [
            a["task"].removesuffix("-v0"),
            a["variant"],
            f"{pct[0]} [{pct[1]}-{pct[2]}]",
            "-" if ratio is None else f"{ratio:.2f}",
        ]
        if reference:
            row.append("-" if ref is None else _pc(100 * ref["success_mean"]))
        errors = f", {a['errors']} not run" if a["errors"] else ""
        row.append(f"{a['episodes'] - a['successes']}/{a['episodes']}{errors}")
        table.add_row(*row)
    return table


def cmd_report(args: argparse.Namespace) -> int:
    """Write an output folder's report.html again from its results (with the current report code
    and, if given, another expert reference)."""
    _require_command("report")
    _in_path("FOLDER", args.folder, "twin eval folder")
    if args.reference:
        _in_path("--reference", args.reference, "reference file or folder")
    from pathlib import Path

    from agents.evaluation.report import load_results, write_report
    from agents.evaluation.scorecard import load_reference
    from agents.evaluation.store import list_videos

    folder = Path(args.folder)
    try:
        doc = load_results(folder)
        meta = doc["scorecard"]
        is_expert = (meta.get("policy") or {}).get("kind") == "expert"
        reference = None if is_expert and not args.reference else load_reference(meta, args.reference)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path = write_report(folder, meta, doc["aggregates"], doc["episodes"], list_videos(folder), reference)
    out.print(
        _scorecard_table(
            f"{meta['suite']}: {(meta.get('policy') or {}).get('kind')} policy", doc["aggregates"], reference
        )
    )
    out.print(f"wrote {path}", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.plot:
        _require("twin compare --plot", "eval", ["matplotlib"])
        _out_file("--plot", args.plot)
    _in_path("A", args.a, "twin eval folder")
    _in_path("B", args.b, "twin eval folder")
    from pathlib import Path

    from agents.evaluation.report import compare

    try:
        rows, notes = compare(args.a, args.b, Path(args.plot) if args.plot else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    caption = "success: % of episodes [95% interval]; overlap: yes means the difference is not significant"
    table = Table(title=f"A = {args.a}   B = {args.b}", caption=caption)
    for col in ("task", "variant", "success A %", "success B %", "better", "overlap"):
        table.add_column(
            col,
            justify="left" if col in ("task", "variant") else "right",
            no_wrap=col in ("task", "variant"),
            min_width=14 if col.startswith("success") else None,
        )
    for r in rows:
        a = [_pc(100 * v) for v in (r["success_a"], *r["ci_a"])]
        b = [_pc(100 * v) for v in (r["success_b"], *r["ci_b"])]
        table.add_row(
            r["task"].removesuffix("-v0"),
            r["variant"],
            f"{a[0]} [{a[1]}-{a[2]}]",
            f"{b[0]} [{b[1]}-{b[2]}]",
            r["better"],
            "yes" if r["intervals_overlap"] else "no",
        )
    out.print(table)
    for note in notes:
        err.print(f"note: {note}")
    if args.plot:
        out.print(f"plot written to {args.plot}")
    return 0
