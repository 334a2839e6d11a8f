"""Look at a report the way a reader does: open it in headless Chromium, check that its tables fit
the page, its plots load and its videos play, and take a screenshot of every section.

``python -m agents.evaluation.browser REPORT.html OUT_DIR`` prints what it found and writes
``OUT_DIR/<section>.png``. Chromium comes from the system (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SECTIONS = ("headline", "kpis", "plots", "videos", "failures", "provenance")
WIDTH, HEIGHT = 1280, 900
"""The window a report is checked in, pixels (a laptop screen)."""

_PROBE = """<script>
window.addEventListener('load', () => {
  const vids = [...document.querySelectorAll('video')];
  const settle = vids.map(v => new Promise(res => {
    if (v.readyState >= 1 || v.error) return res();
    v.addEventListener('loadedmetadata', res); v.addEventListener('error', res);
  }));
  Promise.all(settle).then(() => {
    const page = document.documentElement;
    const tables = [...document.querySelectorAll('table')].map((t, i) => {
      const box = t.parentElement;
      return {index: i, width: t.scrollWidth, room: box.clientWidth, section: t.closest('[id]') ? '' : ''};
    });
    const out = {
      viewport: window.innerWidth,
      page_width: page.scrollWidth,
      tables: tables,
      images: [...document.querySelectorAll('img')].map(m => ({w: m.naturalWidth, h: m.naturalHeight})),
      videos: vids.map(v => ({duration: v.duration, ready: v.readyState, error: v.error ? v.error.code : null,
                               width: v.videoWidth})),
      sections: [...document.querySelectorAll('[id]')].map(e => e.id),
    };
    const pre = document.createElement('pre'); pre.id = '__probe'; pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
});
</script>"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout


def probe(report: Path, browser: str | None = None, timeout: float = 120) -> dict[str, Any]:
    """Open ``report`` in Chromium at 1280x900 and measure it: page and table widths, images,
    videos (duration, error), section ids."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium on PATH (Debian: apt-get install chromium)")
    html = Path(report).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "report.html"
        copy.write_text(html.replace("</body>", _PROBE + "</body>", 1))
        dom = _run(
            browser,
            [f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=15000", "--dump-dom", copy.as_uri()],
            timeout,
        )
    m = re.search(r'<pre id="__probe">(.*?)</pre>', dom, re.S)
    if m is None:
        raise RuntimeError(f"{report}: the page did not finish loading in Chromium")
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def problems(found: dict[str, Any]) -> list[str]:
    """What a reader would trip over: the page wider than the window, a table wider than its box,
    an empty plot, a video that does not play, a section missing."""
    out = []
    if found["page_width"] > found["viewport"]:
        out.append(f"the page is {found['page_width']} px wide in a {found['viewport']} px window")
    for t in found["tables"]:
        if t["width"] > t["room"] + 1:
            out.append(f"table {t['index']} is {t['width']} px wide in {t['room']} px")
    for i, img in enumerate(found["images"]):
        if not img["w"]:
            out.append(f"image {i} did not load")
    for i, v in enumerate(found["videos"]):
        if v["error"] is not None or not v["duration"] or v["duration"] != v["duration"]:
            out.append(f"video {i} does not play (error {v['error']}, duration {v['duration']})")
    missing = [s for s in SECTIONS if s not in found["sections"]]
    if missing:
        out.append(f"sections missing: {missing}")
    return out


def screenshots(report: Path, out_dir: Path, browser: str | None = None, timeout: float = 120) -> list[Path]:
    """A 1280x900 screenshot of each section of ``report`` (scrolled to it), as ``<section>.png``."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium on PATH (Debian: apt-get install chromium)")
    out_dir.mkdir(parents=True, exist_ok=True)
    html = Path(report).read_text()
    shots = []
    with tempfile.TemporaryDirectory() as tmp:
        for section in SECTIONS:  # the page with only this section shown, from its top
            path = out_dir / f"{section}.png"
            only = f"<style>body>section{{display:none}}body>section#{section}{{display:block}}</style></head>"
            copy = Path(tmp) / f"{section}.html"
            copy.write_text(html.replace("</head>", only, 1))
            args = [f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=15000", f"--screenshot={path}"]
            _run(browser, [*args, copy.as_uri()], timeout)
            if path.is_file():
                shots.append(path)
    return shots


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m agents.evaluation.browser REPORT.html OUT_DIR", file=sys.stderr)
        return 2
    report, out_dir = Path(argv[0]), Path(argv[1])
    try:
        found = probe(report)
        shots = screenshots(report, out_dir)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"browser: {exc}", file=sys.stderr)
        return 2
    issues = problems(found)
    for issue in issues:
        print(f"problem: {issue}")
    print(
        f"{len(found['tables'])} tables, {len(found['images'])} images, {len(found['videos'])} videos; "
        f"screenshots: {', '.join(str(p) for p in shots)}"
    )
    return 1 if issues else 0


if __name__ == "__main__":
    raise SystemExit(main())
