"""Scorecards: per-episode rows to aggregates (Wilson intervals), files, plots, the HTML report, comparisons."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.files import atomic_write_bytes, atomic_write_text

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0, 1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always holds p; clamp float rounding at the ends (p = 0 or 1).
    return max(0.0, min(center - half, p)), min(1.0, max(center + half, p))


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, variant): episodes, success mean with its 95% Wilson interval, KPI means and percentiles."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["variant"]), []).append(r)
    out = []
    for (task, variant), rs in groups.items():
        n, k = len(rs), sum(r["success"] for r in rs)
        lo, hi = wilson(k, n)
        agg: dict[str, Any] = {
            "task": task,
            "variant": variant,
            "episodes": n,
            "successes": k,
            "success_mean": k / n,
            "success_ci95_low": lo,
            "success_ci95_high": hi,
            "policy_failures": sum(1 for r in rs if r["failure"] and r["failure"].startswith("policy")),
            "errors": sum(1 for r in rs if r.get("error")),
        }
        kpis = sorted({k for r in rs for k in r if k.startswith("kpi_")})  # error rows carry none
        for key in ["return", "length", *kpis]:
            vals = np.array([math.nan if r.get(key) is None else r[key] for r in rs], dtype=float)
            vals = vals[np.isfinite(vals)]
            name = key.removeprefix("kpi_")
            if len(vals):
                agg[f"{name}_mean"] = float(vals.mean())
                agg[f"{name}_p50"] = float(np.percentile(vals, 50))
                agg[f"{name}_p95"] = float(np.percentile(vals, 95))
        out.append(agg)
    return out


def write_results(
    out: Path, rows: list[dict[str, Any]], aggregates: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    """``results.json`` (meta, aggregates, rows) and ``results.parquet`` (rows), each written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    doc = {"scorecard": meta, "aggregates": aggregates, "episodes": rows}
    atomic_write_text(out / "results.json", json.dumps(doc, indent=2, default=_nan_to_none, allow_nan=False) + "\n")
    table = pa.Table.from_pylist(rows)
    table = table.replace_schema_metadata({"scorecard": json.dumps(meta, default=str)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(out / "results.parquet", buf.getvalue())


def _nan_to_none(o: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NaN KPIs (undefined, e.g. cycle time with no part placed) become None for JSON, and every
    row gets every column (rows of episodes that could not finish have no KPIs)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k in keys for v in [r.get(k)]}
        for r in rows
    ]


# -- plots and the report ---------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_success(
    aggregates: list[dict[str, Any]], title: str, others: list[tuple[str, list[dict[str, Any]]]] | None = None
) -> str:
    """Success per task/variant with 95% Wilson intervals (several policies side by side when given)."""
    plt = _plt()
    sets = others or [(title, aggregates)]
    labels = [f"{a['task'].removesuffix('-v0')}\n{a['variant']}" for a in sets[0][1]]
    fig, ax = plt.subplots(figsize=(min(max(4.5, 0.9 * len(labels) + 1.5), 11.5), 3.6))
    width = 0.8 / len(sets)
    for j, (name, aggs) in enumerate(sets):
        x = np.arange(len(aggs)) + (j - (len(sets) - 1) / 2) * width
        m = np.array([a["success_mean"] for a in aggs])
        lo = np.clip(m - np.array([a["success_ci95_low"] for a in aggs]), 0, None)
        hi = np.clip(np.array([a["success_ci95_high"] for a in aggs]) - m, 0, None)
        ax.bar(x, 100 * m, width=width * 0.9, yerr=[100 * lo, 100 * hi], capsize=3, label=name)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=60 if len(labels) > 8 else 0, ha="center")
    ax.set_ylim(0, 105)
    ax.set_ylabel("success (% of episodes, 95% interval)")
    ax.grid(axis="y", alpha=0.3)
    if len(sets) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def plot_kpis(rows: list[dict[str, Any]]) -> str | None:
    """Box plots of a few KPIs per task and variant, each axis in its unit."""
    from agents.evaluation.scorecard import kpi_info

    plt = _plt()
    keys = [k for k in ("return", "length", "kpi_energy", "kpi_throughput") if any(_finite(r.get(k)) for r in rows)]
    groups = sorted({(r["task"], r["variant"]) for r in rows})
    if not keys:
        return None
    fig, axes = plt.subplots(len(keys), 1, figsize=(min(max(5.0, 0.55 * len(groups) + 1.5), 11.5), 2.6 * len(keys)))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys, strict=True):
        data = [[r[key] for r in rows if (r["task"], r["variant"]) == g and _finite(r.get(key))] for g in groups]
        ax.boxplot([d or [np.nan] for d in data], tick_labels=[f"{g[0].removesuffix('-v0')}/{g[1]}" for g in groups])
        name, unit, _ = kpi_info(key.removeprefix("kpi_"))
        ax.set_ylabel(f"{name} ({unit})", fontsize=8)
        ax.tick_params(axis="x", labelsize=6, rotation=60)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_cycle_times(rows: list[dict[str, Any]]) -> str | None:
    plt = _plt()
    vals = {
        g: [
            r["kpi_cycle_time_mean"]
            for r in rows
            if (r["task"], r["variant"]) == g and _finite(r.get("kpi_cycle_time_mean"))
        ]
        for g in sorted({(r["task"], r["variant"]) for r in rows})
    }
    vals = {g: v for g, v in vals.items() if v}
    if not vals:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for (task, variant), v in vals.items():
        ax.hist(v, bins=20, alpha=0.6, label=f"{task} / {variant}")
    ax.set_xlabel("cycle time per part, episode mean (s)")
    ax.set_ylabel("episodes (count)")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def encode_video(frames: list[np.ndarray], fps: int) -> tuple[bytes, str]:
    """Frames as MP4 bytes (or GIF where no ffmpeg is available), with the file suffix."""
    import imageio.v3 as iio

    try:
        data = iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", fps=fps, codec="libx264", macro_block_size=8)
        return data, ".mp4"
    except Exception:
        data = iio.imwrite("<bytes>", np.stack(frames[::2]), extension=".gif", duration=1000 / fps * 2, loop=0)
        return data, ".gif"


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1180px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}th{background:#f4f4f4}
td.l,th.l{text-align:left}td.l:first-child{white-space:nowrap}.ref{color:#777;font-size:11px;display:block}.good{color:#176f2c}.bad{color:#a61b1b}
img{max-width:100%}video{width:100%}figure{display:inline-block;margin:0 1em 1em 0;width:360px;vertical-align:top}
figcaption{font-size:12px}code{font-size:12px;word-break:break-all}.note{color:#555;font-size:13px}"""


def _cell(text: str, ref: str | None = None, cls: str = "") -> str:
    refs = f"<span class='ref'>expert {html.escape(ref)}</span>" if ref is not None else ""
    return f"<td class='{cls}'>{html.escape(text)}{refs}</td>"


def _headline_html(aggregates, reference) -> str:
    from agents.evaluation.scorecard import ROBUSTNESS_VARIANTS, headline, success_text, variant_names

    variants = variant_names(aggregates)
    ref_rows = {r["task"]: r for r in headline(reference["aggregates"])} if reference else {}
    head = "<th class='l'>task</th>" + "".join(f"<th>{html.escape(v)}: success (95% interval)</th>" for v in variants)
    head += "".join(f"<th>robustness: {v} / nominal</th>" for v in ROBUSTNESS_VARIANTS)
    body = ""
    for row in headline(aggregates):
        ref = ref_rows.get(row["task"])
        cells = f"<td class='l'>{html.escape(row['task'])}</td>"
        for v in variants:
            a = row["variants"].get(v)
            r = success_text(ref["variants"].get(v)) if ref and v in ref["variants"] else None
            cells += _cell(success_text(a), r)
        for v in ROBUSTNESS_VARIANTS:
            ratio = row["robustness"][v]
            r_ratio = ref["robustness"][v] if ref else None
            text = "-" if ratio is None else f"{ratio:.2f}"
            cls = "" if ratio is None else ("good" if ratio >= 0.9 else "bad" if ratio < 0.7 else "")
            cells += _cell(text, None if ref is None else ("-" if r_ratio is None else f"{r_ratio:.2f}"), cls)
        body += f"<tr>{cells}</tr>"
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _kpi_html(aggregates, reference) -> str:
    from agents.evaluation.scorecard import fmt, kpi_info, kpi_keys, variant_names

    refs = {(a["task"], a["variant"]): a for a in reference["aggregates"]} if reference else {}
    out = ""
    for task in dict.fromkeys(a["task"] for a in aggregates):
        aggs = {a["variant"]: a for a in aggregates if a["task"] == task}
        variants = [v for v in variant_names(aggregates) if v in aggs]
        head = "<th class='l'>KPI (unit), episode mean</th>" + "".join(f"<th>{html.escape(v)}</th>" for v in variants)
        body, hidden = "", 0
        for key in kpi_keys(aggregates, task):
            values = [aggs[v].get(f"{key}_mean") for v in variants]
            if all(x is None or x == 0 for x in values) and key not in ("collisions", "drops"):
                hidden += 1  # nothing to read: the task has none of it (parts in a reach task)
                continue
            name, unit, _ = kpi_info(key)
            cells = f"<td class='l'>{html.escape(name)} ({html.escape(unit or '-')})</td>"
            for v in variants:
                ref = refs.get((task, v))
                r = fmt(ref.get(f"{key}_mean"), unit) if ref is not None else None
                cells += _cell(fmt(aggs[v].get(f"{key}_mean"), unit), r)
            body += f"<tr>{cells}</tr>"
        note = f"<p class='note'>{hidden} KPIs that are 0 in every variant are left out.</p>" if hidden else ""
        out += f"<h3>{html.escape(task)}</h3><div class='scroll'><table><tr>{head}</tr>{body}</table></div>{note}"
    return out


def _provenance_html(meta: dict[str, Any], reference) -> str:
    names = {
        "suite": "Suite",
        "suite_file": "Suite file",
        "suite_hash": "Suite SHA-256",
        "layout_hashes": "Layout SHA-256s",
        "policy": "Policy",
        "observation": "Observation the policy used",
        "package_version": "Factory Twin version",
        "git_commit": "Git commit",
        "created": "Created",
        "backend": "Worker backend",
        "workers": "Workers",
        "limits": "Limits per episode",
        "episodes_per_minute": "Episodes per minute",
        "resumed_with_episodes": "Episodes kept from an earlier run",
        "tasks_run": "Tasks run (part of the suite)",
        "variants_run": "Variants run (part of the suite)",
    }
    rows = ""
    for k, v in meta.items():
        if isinstance(v, dict):
            text = "<br>".join(f"{html.escape(str(a))}: <code>{html.escape(str(b))}</code>" for a, b in v.items())
        else:
            text = f"<code>{html.escape(str(v))}</code>"
        rows += f"<tr><th class='l'>{html.escape(names.get(k, k))}</th><td class='l'>{text}</td></tr>"
    if reference is not None:
        r = reference["scorecard"]
        rows += (
            "<tr><th class='l'>Expert reference</th><td class='l'>"
            f"{html.escape(str(r.get('suite')))} at commit <code>{html.escape(str(r.get('git_commit')))}</code>, "
            f"{html.escape(str(r.get('created')))}</td></tr>"
        )
    return f"<div class='scroll'><table>{rows}</table></div>"


def write_report(
    out: Path,
    meta: dict[str, Any],
    aggregates: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    videos: dict[tuple[str, str, int], Path],
    reference: dict[str, Any] | None = None,
    hide_seeds: bool = False,
) -> Path:
    """A single self-contained ``report.html``: the headline per task (success per variant and the
    robustness ratios), KPI tables with units, plots and episode videos (embedded as data URIs),
    failed episodes and provenance; ``reference`` (an expert's results) shows beside each figure.
    ``hide_seeds``: a private suite's report, whose rows carry episode numbers in place of seeds
    and which shows no videos."""
    policy = meta.get("policy", {}) or {}
    kind = policy.get("kind", "")
    sets = [(f"policy ({kind})", aggregates)]
    if reference is not None:
        ref_map = {(a["task"], a["variant"]): a for a in reference["aggregates"]}
        if all((a["task"], a["variant"]) in ref_map for a in aggregates):
            sets.append(("expert (reference)", [ref_map[a["task"], a["variant"]] for a in aggregates]))
    figs = [
        ("Success per task and variant", plot_success(aggregates, kind, others=sets if len(sets) > 1 else None)),
        ("KPI distributions", plot_kpis(rows)),
        ("Cycle times", plot_cycle_times(rows)),
    ]
    fig_html = "".join(
        f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>" for t, b in figs if b
    )
    vid_html = ""
    for (task, variant, seed), path in videos.items():
        mime = "video/mp4" if path.suffix == ".mp4" else "image/gif"
        data = base64.b64encode(path.read_bytes()).decode()
        tag = (
            f"<video controls loop muted playsinline src='data:{mime};base64,{data}'></video>"
            if mime == "video/mp4"
            else f"<img alt='episode' src='data:{mime};base64,{data}'>"
        )
        vid_html += (
            f"<figure>{tag}<figcaption>{html.escape(task)} / {html.escape(variant)} / seed {seed}</figcaption></figure>"
        )
    if hide_seeds and videos:
        raise ValueError("a report that hides its seeds shows no videos")
    failures = [r for r in rows if r["failure"]]
    fail_html = "".join(
        f"<tr><td class='l'>{html.escape(r['task'])}</td><td class='l'>{html.escape(r['variant'])}</td>"
        f"<td>{r['seed']}</td><td class='l'>{html.escape(r['failure'])}</td></tr>"
        for r in failures[:200]
    )
    ref_note = (
        "Grey figures under each number are the scripted expert's on the same suite, for reference."
        if reference is not None
        else "No expert reference for this suite (pass <code>--reference</code> with an expert's results folder)."
    )
    no_videos = "<p>none: the suite's seeds are private</p>" if hide_seeds else "<p>none recorded (use --videos K)</p>"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Factory Twin scorecard: {html.escape(meta["suite"])}</title><style>{_CSS}</style></head><body>
<h1>Scorecard: {html.escape(meta["suite"])}</h1>
<p>Policy: <code>{html.escape(str(policy.get("path") or kind))}</code> ({html.escape(kind)}); {len(rows)} episodes.
{ref_note}</p>
<section id="headline"><h2>Headline</h2>
<p class="note">Success is the share of episodes that met the task's goal, with its 95% Wilson interval. Robustness
is the success in a variant over the success in the nominal cell (1.00: unaffected).</p>
{_headline_html(aggregates, reference)}</section>
<section id="kpis"><h2>KPIs</h2>{_kpi_html(aggregates, reference)}</section>
<section id="plots">{fig_html}</section>
<section id="videos"><h2>Episode videos</h2>{vid_html or no_videos}</section>
<section id="failures"><h2>Failed episodes ({len(failures)})</h2><div class='scroll'><table><tr><th class='l'>task</th>
<th class='l'>variant</th><th>{"episode" if hide_seeds else "seed"}</th><th class='l'>reason</th></tr>{fail_html}</table></div></section>
<section id="provenance"><h2>Provenance</h2>{_provenance_html(meta, reference)}</section></body></html>"""
    atomic_write_text(out / "report.html", doc)
    return out / "report.html"


# -- comparison -------------------------------------------------------------------------------


def load_results(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing (not an output folder of twin eval)")
    try:
        doc = json.loads(path.read_text())
        doc["aggregates"], doc["scorecard"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a twin eval results file ({exc})") from None
    return doc


def compare(
    dir_a: str | Path, dir_b: str | Path, out_png: Path | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per (task, variant) in both: which policy has the higher success and whether the intervals overlap."""
    a, b = load_results(dir_a), load_results(dir_b)
    notes = []
    if a["scorecard"].get("suite_hash") != b["scorecard"].get("suite_hash"):
        notes.append("the two results come from different suites (suite hashes differ): compare with care")
    bmap = {(x["task"], x["variant"]): x for x in b["aggregates"]}
    rows, pairs = [], []
    for x in a["aggregates"]:
        y = bmap.get((x["task"], x["variant"]))
        if y is None:
            notes.append(f"{x['task']} / {x['variant']}: only in {dir_a}")
            continue
        overlap = not (x["success_ci95_high"] < y["success_ci95_low"] or y["success_ci95_high"] < x["success_ci95_low"])
        if x["success_mean"] == y["success_mean"]:
            better = "tie"
        else:
            better = "A" if x["success_mean"] > y["success_mean"] else "B"
        rows.append(
            {
                "task": x["task"],
                "variant": x["variant"],
                "success_a": x["success_mean"],
                "ci_a": [x["success_ci95_low"], x["success_ci95_high"]],
                "success_b": y["success_mean"],
                "ci_b": [y["success_ci95_low"], y["success_ci95_high"]],
                "better": better,
                "intervals_overlap": overlap,
                "significant": not overlap,
            }
        )
        pairs.append((x, y))
    if out_png is not None and pairs:
        png = plot_success(
            [], "", others=[("A: " + str(dir_a), [p[0] for p in pairs]), ("B: " + str(dir_b), [p[1] for p in pairs])]
        )
        atomic_write_bytes(out_png, base64.b64decode(png))
    return rows, notes


def scorecard_meta(suite, spec, backend: str, workers: int) -> dict[str, Any]:
    from agents.common.files import git_commit, package_version

    return {
        "suite": suite.suite.name,
        "suite_file": suite.path.name,
        "suite_hash": suite.hash,
        "layout_hashes": suite.layout_hashes(),
        "policy": spec.describe() | {"path": Path(spec.path).name if spec.path else None},
        "package_version": package_version(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "backend": backend,
        "workers": workers,
    }
