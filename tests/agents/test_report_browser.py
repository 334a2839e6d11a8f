"""The HTML report as a reader meets it: opened in headless Chromium, its tables fit a 1280 px
window, its plots load, its videos play; a screenshot of every section is written and named in
the test output. Skipped where no Chromium is installed (CI installs Debian's)."""

from __future__ import annotations

import imageio.v3 as iio
import pytest

from agents.cli import run as cli
from agents.evaluation.browser import SECTIONS, find_chromium, probe, problems, screenshots

SUITE = """name = "browser-check"
[[tasks]]
env_id = "FactoryReach-v0"
seeds = [1, 2]
[[tasks.variants]]
name = "nominal"
[[tasks.variants]]
name = "randomized"
env_kwargs = { randomize = true }
[[tasks.variants]]
name = "faults"
env_kwargs = { faults = "all" }
[[tasks]]
env_id = "PegInsert-v0"
seeds = [1]
"""


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_report_reads_well_in_a_real_browser(tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "eval"
    assert cli(["eval", "--policy", "expert", "--suite", str(suite), "--out", str(out), "--videos", "1"]) == 0
    capsys.readouterr()
    report = out / "report.html"
    found = probe(report)
    assert problems(found) == []
    assert len(found["videos"]) == 2 and all(v["duration"] > 0 and v["width"] > 0 for v in found["videos"])
    assert len(found["images"]) >= 2  # the success plot and the KPI plots
    text = report.read_text()
    for words in ("Robustness", "Throughput (parts/h)" if "Throughput" in text else "Return (reward)", "Provenance"):
        assert words in text
    assert "success_ci95_low" not in text  # people read names, not columns
    shots = screenshots(report, tmp_path / "screenshots")
    assert [p.stem for p in shots] == list(SECTIONS)
    for p in shots:  # something drawn below the title, not a blank page
        pixels = iio.imread(p)[200:, :, :3]
        assert pixels.std() > 5, p
    with capsys.disabled():
        print("\nreport screenshots:\n" + "\n".join(f"  {p}" for p in shots))
