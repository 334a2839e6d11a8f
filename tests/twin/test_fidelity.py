"""Fidelity: a twin run held against a plant log (here, other twin runs), as fidelity.json and a report."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pyarrow")

from agents.cli import run as twin
from agents.evaluation.browser import find_chromium, probe
from agents.tools.play import run_episodes
from twin.paths import LAYOUTS_DIR
from twin.telemetry.fidelity import fidelity, read_log


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """The 'plant': two MachineTend-v1 expert episodes; the same seeds recorded again; and the
    twin with the first machine's process time [4, 5] s wrongly set to [2, 2.5] s."""
    root = tmp_path_factory.mktemp("fidelity")
    fast = root / "fast.toml"
    text = (LAYOUTS_DIR / "machine_tending.toml").read_text()
    assert "process_time = [4.0, 5.0]" in text
    fast.write_text(text.replace("process_time = [4.0, 5.0]", "process_time = [2.0, 2.5]"))
    run_episodes("MachineTend-v1", "expert", 2, 3, telemetry=root / "plant", telemetry_rate=5)
    run_episodes("MachineTend-v1", "expert", 2, 3, telemetry=root / "again", telemetry_rate=5)
    run_episodes(
        "MachineTend-v1", "expert", 2, 3, telemetry=root / "wrong", telemetry_rate=5, env_kwargs={"layout": str(fast)}
    )
    return root


def test_a_run_against_the_same_run_again_agrees_perfectly(logs):
    doc = fidelity(read_log(logs / "plant"), read_log(logs / "again"))
    assert doc["throughput_error"] == 0.0
    assert (doc["ks_statistic"], doc["ks_pvalue"], doc["wasserstein_s"]) == (0.0, 1.0, 0.0)
    assert doc["time_in_state_agreement"] == {"machine-0": 1.0, "machine-1": 1.0}
    for d in doc["kpi_differences"].values():  # each side resampled on its own: an interval about zero
        assert d["difference"] == 0.0 and d["ci95"][0] <= 0.0 <= d["ci95"][1]
    assert doc["cycle_times"]["plant"] == 8  # four blanks an episode, each from arrival to output


def test_a_wrong_process_time_scores_measurably_worse(logs):
    plant = read_log(logs / "plant")
    good = fidelity(plant, read_log(logs / "again"))
    bad = fidelity(plant, read_log(logs / "wrong"))
    assert bad["throughput_error"] > good["throughput_error"]
    assert bad["wasserstein_s"] > 0.5 and bad["ks_statistic"] > 0
    # the machine whose process time is wrong drifts out of step with the plant's
    assert bad["time_in_state_agreement"]["machine-0"] < 0.9
    # and spends measurably less of its time processing: the interval leaves out zero
    assert bad["kpi_differences"]["machine-0.processing_share"]["ci95"][1] < 0


def test_twin_fidelity_writes_its_json_and_report_and_refuses_bad_logs(logs, tmp_path, capsys):
    out = tmp_path / "fid"
    assert twin(["fidelity", str(logs / "plant"), str(logs / "wrong"), "--out", str(out)]) == 0
    doc = json.loads((out / "fidelity.json").read_text())
    for key in ("throughput_error", "ks_statistic", "ks_pvalue", "wasserstein_s", "time_in_state_agreement"):
        assert key in doc
    assert doc == fidelity(read_log(logs / "plant"), read_log(logs / "wrong"))
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "cycle time (s)" not in page  # axes live in the images
    capsys.readouterr()
    assert twin(["fidelity", str(tmp_path / "nothing"), str(logs / "wrong"), "--out", str(out)]) == 2
    assert "nothing: no such telemetry folder" in capsys.readouterr().err
    # a log with a column missing is named with its file and the column
    import pyarrow.parquet as pq

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("signals.parquet", "telemetry.json"):
        (broken / name).write_bytes((logs / "plant" / name).read_bytes())
    pq.write_table(pq.read_table(logs / "plant" / "events.parquet").drop(["kind"]), broken / "events.parquet")
    assert twin(["fidelity", str(broken), str(logs / "wrong"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "events.parquet" in err and "'kind'" in err


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_fidelity_report_reads_in_a_browser(logs, tmp_path):
    out = tmp_path / "fid"
    assert twin(["fidelity", str(logs / "plant"), str(logs / "wrong"), "--out", str(out)]) == 0
    found = probe(out / "report.html")
    assert found["page_width"] <= found["viewport"]
    assert len(found["images"]) == 2 and all(img["w"] > 300 for img in found["images"])
    assert all(t["width"] <= t["room"] + 1 for t in found["tables"])
    assert {"headline", "kpis", "cycle-times", "states"} <= set(found["sections"])
