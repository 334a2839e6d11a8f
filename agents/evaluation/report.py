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

from agents.common.checkpoint import atomic_write_bytes, atomic_write_text

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
    labels = [f"{a['task']}\n{a['variant']}" for a in sets[0][1]]
    fig, ax = plt.subplots(figsize=(max(4.5, 2.2 * len(labels)), 3.4))
    width = 0.8 / len(sets)
    for j, (name, aggs) in enumerate(sets):
        x = np.arange(len(aggs)) + (j - (len(sets) - 1) / 2) * width
        m = np.array([a["success_mean"] for a in aggs])
        lo = np.clip(m - np.array([a["success_ci95_low"] for a in aggs]), 0, None)
        hi = np.clip(np.array([a["success_ci95_high"] for a in aggs]) - m, 0, None)
        ax.bar(x, m, width=width * 0.9, yerr=[lo, hi], capsize=4, label=name)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson)")
    ax.grid(axis="y", alpha=0.3)
    if len(sets) > 1:
        ax.legend()
    return _png(fig)


def plot_kpis(rows: list[dict[str, Any]]) -> str | None:
    plt = _plt()
    keys = [k for k in ("return", "length", "kpi_energy", "kpi_throughput") if any(_finite(r.get(k)) for r in rows)]
    groups = sorted({(r["task"], r["variant"]) for r in rows})
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        data = [[r[key] for r in rows if (r["task"], r["variant"]) == g and _finite(r.get(key))] for g in groups]
        ax.boxplot([d or [np.nan] for d in data], tick_labels=[g[0].split("-")[0] for g in groups])
        ax.set_title(key.removeprefix("kpi_"))
        ax.grid(alpha=0.3)
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
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (task, variant), v in vals.items():
        ax.hist(v, bins=20, alpha=0.6, label=f"{task} / {variant}")
    ax.set_xlabel("cycle time per part, episode mean (s)")
    ax.set_ylabel("episodes")
    ax.legend()
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


def write_report(
    out: Path,
    meta: dict[str, Any],
    aggregates: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    videos: dict[tuple[str, str, int], Path],
) -> Path:
    """A single self-contained ``report.html``: plots and videos (files from ``encode_video``) are
    embedded as data URIs."""
    cols = [
        "task",
        "variant",
        "episodes",
        "success_mean",
        "success_ci95_low",
        "success_ci95_high",
        "return_mean",
        "length_mean",
    ]
    extra = ["throughput_mean", "cycle_time_mean_mean", "cycle_time_mean_p95", "drops_mean", "energy_mean"]
    cols += [c for c in extra if any(c in a for a in aggregates)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(a.get(c)))}</td>" for c in cols) + "</tr>" for a in aggregates
    )
    figs = [
        ("Success per task (95% Wilson intervals)", plot_success(aggregates, meta.get("policy", {}).get("kind", ""))),
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
            f"<video controls loop muted src='data:{mime};base64,{data}'></video>"
            if mime == "video/mp4"
            else f"<img alt='episode' src='data:{mime};base64,{data}'>"
        )
        vid_html += (
            f"<figure>{tag}<figcaption>{html.escape(task)} / {html.escape(variant)} / seed {seed}</figcaption></figure>"
        )
    failures = [r for r in rows if r["failure"]]
    fail_html = "".join(
        f"<tr><td>{html.escape(r['task'])}</td><td>{html.escape(r['variant'])}</td><td>{r['seed']}</td>"
        f"<td>{html.escape(r['failure'])}</td></tr>"
        for r in failures[:200]
    )
    meta_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>" for k, v in meta.items()
    )
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>Factory Twin scorecard: {html.escape(meta["suite"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:14px}}th{{background:#f4f4f4}}
img,video{{max-width:100%}}figure{{display:inline-block;margin:0 1em 1em 0;width:420px}}</style></head><body>
<h1>Scorecard: {html.escape(meta["suite"])}</h1>
<p>Policy: <code>{html.escape(json.dumps(meta.get("policy")))}</code>; {len(rows)} episodes.</p>
<table><tr>{head}</tr>{body}</table>{fig_html}
<h2>Episode videos</h2>{vid_html or "<p>none recorded (use --videos K)</p>"}
<h2>Failed episodes ({len(failures)})</h2><table><tr><th>task</th><th>variant</th><th>seed</th><th>reason</th></tr>{fail_html}</table>
<h2>Provenance</h2><table>{meta_html}</table></body></html>"""
    atomic_write_text(out / "report.html", doc)
    return out / "report.html"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


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
    from agents.common.checkpoint import git_commit, package_version

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
