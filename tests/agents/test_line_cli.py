"""``twin play --line``, ``twin line`` and ``twin sweep`` as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest

from agents.cli import run as twin


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "pick_tend_sort.fit.json"
    assert (
        twin(
            ["line", "fit", "pick_tend_sort", "--seeds", "0", "--duration", "120", "--workers", "1", "--out", str(path)]
        )
        == 0
    )
    return path


def test_line_check(tmp_path, capsys):
    assert twin(["line", "check", "pick_tend_sort"]) == 0
    assert "pick (ConveyorPick-v1) -> [2] -> tend" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[line]\nname = "b"\n[[line.cells]]\nname = "a"\nenv = "ConveyorPick-v1"\nideal_cycle_time = 5\n'
        '[[line.buffers]]\nfrom = "a"\nto = "z"\n'
    )
    assert twin(["line", "check", str(bad)]) == 2
    assert "line.buffers[0].to: no cell named 'z'" in capsys.readouterr().err
    bad.write_text('[line]\nname = "b"\n[[line.cells]]\nname = "a"\nenv = "Nope-v0"\nideal_cycle_time = 5\n')
    assert twin(["line", "check", str(bad)]) == 2
    assert "line.cells[0] ('a').env: unknown env id 'Nope-v0'" in capsys.readouterr().err


def test_play_line_writes_events_and_kpis(tmp_path, capsys):
    out = tmp_path / "play"
    assert (
        twin(["play", "--line", "pick_tend_sort", "--duration", "40", "--workers", "1", "--out", str(out), "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["mode"] == "physics" and doc["runs"][0]["pick_produced"] >= 3
    kpis = json.loads((out / "seed-0" / "kpis.json").read_text())
    assert kpis["units"]["throughput"] == "parts/h" and kpis["units"]["pick_blocked_s"] == "s"
    rows = list(csv.DictReader((out / "seed-0" / "events.csv").open()))
    assert {"entered", "finished", "cell_state"} <= {r["kind"] for r in rows}
    assert {r["detail"] for r in rows if r["kind"] == "cell_state"} >= {"busy", "starved"}


def test_play_refusals(capsys):
    assert twin(["play", "ConveyorPick-v1", "--line", "pick_tend_sort"]) == 2
    assert "not both" in capsys.readouterr().err
    assert twin(["play"]) == 2
    assert "name the env to play" in capsys.readouterr().err
    assert twin(["play", "--line", "no_such_line"]) == 2
    assert "no line file or bundled line named 'no_such_line'" in capsys.readouterr().err


def test_line_run_des(model, tmp_path, capsys):
    fitted = json.loads(model.read_text())
    assert fitted["version"] == 2 and fitted["cells"]["sort"]["defect_rate"] == 0.35  # the sorter's feeder's
    assert fitted["cells"]["tend"]["defect_rate"] == 0.0  # a tray brings in no defects
    assert (
        twin(["line", "run", "pick_tend_sort", "--model", str(model), "--seeds", "0-4", "--duration", "600", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["seed"] for r in doc["runs"]] == [0, 1, 2, 3, 4] and all(r["throughput"] > 0 for r in doc["runs"])
    assert twin(["line", "run", "pick_tend_sort"]) == 2
    assert "--model FILE" in capsys.readouterr().err
    other = tmp_path / "other.toml"
    other.write_text(
        '[line]\nname = "other"\n[[line.cells]]\nname = "pick"\nenv = "ConveyorPick-v1"\nideal_cycle_time = 5\n'
    )
    assert twin(["line", "run", str(other), "--model", str(model)]) == 2
    assert "fitted to line 'pick_tend_sort', not 'other'" in capsys.readouterr().err


def test_sweep_des_grid_resume_and_outputs(model, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "pick_tend_sort",
        "--vary",
        "buffer.0.capacity=1,4",
        "--vary",
        "cell.1.wip_limit=2,4",
        "--model",
        str(model),
        "--seeds",
        "0-2",
        "--duration",
        "900",
        "--backend",
        "local",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    assert twin(args) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 4 and {r["seeds"] for r in rows} == {"3"}
    assert float(rows[0]["throughput"]) > 0 and rows[0]["throughput_ci95"]
    for name in (
        "throughput_vs_buffer.0.capacity.png",
        "wip_vs_cell.1.wip_limit.png",
        "pareto_wip.png",
        "pareto_energy.png",
        "sweep.parquet",
        "pareto.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len((out / "runs.jsonl").read_text().splitlines()) == 12
    capsys.readouterr()
    assert twin(args) == 0  # again: nothing left to run
    assert "resuming: 12 of 12 runs already" in capsys.readouterr().err
    assert len((out / "runs.jsonl").read_text().splitlines()) == 12
    other = [a if a != "buffer.0.capacity=1,4" else "buffer.0.capacity=1,8" for a in args]
    assert twin(other) == 2
    assert "holds another sweep (its vary differ)" in capsys.readouterr().err


def test_sweep_resumes_after_an_interruption(model, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "pick_tend_sort",
        "--vary",
        "buffer.0.capacity=1,2,3",
        "--model",
        str(model),
        "--seeds",
        "0-1",
        "--duration",
        "300",
        "--backend",
        "local",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    assert twin(args) == 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    (out / "runs.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # stopped mid-write
    capsys.readouterr()
    assert twin(args) == 0
    assert "resuming: 3 of 6 runs already" in capsys.readouterr().err
    assert len(list(csv.DictReader((out / "sweep.csv").open()))) == 3


@pytest.mark.parametrize(
    ("vary", "message"),
    [
        ("buffer.7.capacity=1,2", "the line has 2 buffer(s)"),
        ("buffer.0.capacity=0,1", "line.buffers.0.capacity: Input should be greater than or equal to 1"),
        ("cell.0.belt_speed=0.05,0.1", "a task setting changes the cell's physics"),
        ("cell.0.colour=1", "a task setting changes the cell's physics"),
        ("wip=3", "not a line parameter"),
    ],
    ids=["no-buffer", "out-of-bounds", "knob-in-des", "knob-unknown-des", "not-a-parameter"],
)
def test_sweep_refusals(model, tmp_path, capsys, vary, message):
    assert twin(["sweep", "pick_tend_sort", "--vary", vary, "--model", str(model), "--out", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_sweep_physics_refuses_an_unknown_task_setting(tmp_path, capsys):
    args = [
        "sweep",
        "pick_tend_sort",
        "--vary",
        "cell.1.belt_speed=0.1",
        "--mode",
        "physics",
        "--out",
        str(tmp_path / "s"),
    ]
    assert twin(args) == 2
    assert "cell.1.belt_speed" in capsys.readouterr().err


def test_sweep_on_ray_and_best_points_in_physics(model, tmp_path, capsys):
    out = tmp_path / "ray"
    args = [
        "sweep",
        "pick_tend_sort",
        "--vary",
        "buffer.0.capacity=1,2",
        "--model",
        str(model),
        "--seeds",
        "0",
        "--duration",
        "60",
        "--backend",
        "ray",
        "--workers",
        "2",
        "--rerun-best",
        "1",
        "--out",
        str(out),
    ]
    assert twin(args) == 0
    text = capsys.readouterr().out
    assert "on ray (a local cluster of 2 CPUs)" in text.replace("\n", " ")
    best = list(csv.DictReader((out / "best.csv").open()))
    assert len(best) == 1 and float(best[0]["throughput_des"]) >= 0 and best[0]["throughput_physics"] != ""


def test_physics_seeds_need_rerun_best(model, tmp_path, capsys):
    args = [
        "sweep",
        "pick_tend_sort",
        "--vary",
        "buffer.0.capacity=1,2",
        "--model",
        str(model),
        "--physics-seeds",
        "0",
        "--out",
        str(tmp_path / "s"),
    ]
    assert twin(args) == 2
    assert "give --rerun-best K too" in capsys.readouterr().err
