from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.cli import run
from twin.paths import LAYOUTS_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_envs_lists_every_env(capsys):
    import envs

    assert run(["envs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [*envs.ENV_IDS, *envs.SKILL_IDS]
    assert lines[-1].endswith("[skill of MachineTend-v1]")


def test_smoke_passes(capsys):
    assert run(["smoke", "--steps", "3"]) == 0
    assert "smoke passed" in capsys.readouterr().out


def test_smoke_names_the_failing_env(monkeypatch, capsys):
    import agents.tools.smoke as smoke

    real = smoke.smoke_one

    def broken(env_id, mode, **kw):
        if env_id == "ConveyorPick-v0":
            raise RuntimeError("boom")
        return real(env_id, mode, **kw)

    monkeypatch.setattr(smoke, "smoke_one", broken)
    assert run(["smoke", "--steps", "2"]) == 1
    assert "ConveyorPick-v0 [state]: RuntimeError: boom" in capsys.readouterr().err


def test_play_with_the_other_arm_and_refusals(capsys):
    assert run(["play", "PegInsert-v0", "--robot", "iiwa", "--json"]) == 0
    assert '"success_rate": 1.0' in capsys.readouterr().out
    assert run(["play", "PegInsert-v0", "--robot", "ur5"]) == 2
    assert "robots[0].model: Input should be 'panda' or 'iiwa'" in capsys.readouterr().err
    assert run(["play", "FactoryReach-v0", "--robot", "iiwa"]) == 2
    assert "reaches only 91% of the task's target region" in capsys.readouterr().err


def test_layout_check_valid(capsys):
    assert run(["layout", "check", str(LAYOUTS_DIR / "default.toml")]) == 0


def test_layout_check_invalid_exits_2_naming_file_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text((LAYOUTS_DIR / "default.toml").read_text().replace("speed = 0.1", "speed = -0.1"))
    assert run(["layout", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "conveyors[0].speed" in err and "greater than or equal to 0" in err


def test_layout_schema_is_json(capsys):
    assert run(["layout", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "CellLayout"


def test_play_unknown_env_exits_2(capsys):
    assert run(["play", "FactoryReech-v0"]) == 2
    assert "did you mean FactoryReach-v0" in capsys.readouterr().err


def test_play_writes_video_and_prints_kpis(tmp_path, capsys):
    video = tmp_path / "reach.gif"
    assert run(["play", "FactoryReach-v0", "--episodes", "2", "--video", str(video), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(next(ln for ln in out.splitlines() if ln.startswith("{")))
    assert summary["success_rate"] == 1.0 and summary["episodes"] == 2
    assert video.stat().st_size > 1000


def test_play_streams_every_frame_into_an_mp4(tmp_path, capsys):
    import imageio.v2 as imageio

    video = tmp_path / "reach.mp4"
    args = ["play", "FactoryReach-v0", "--episodes", "2", "--video", str(video), "--json"]
    assert run([*args, "--frame-stride", "1", "--video-size", "640x480"]) == 0
    summary = json.loads(next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")))
    with imageio.get_reader(video) as r:
        n_frames = r.count_frames()
        assert r.get_data(0).shape == (480, 640, 3)
    assert n_frames == summary["mean_length"] * 2 + 2  # the reset frame and one per step, per episode
    # the defaults: every second step (and the last) at 480x360, and a bar that counts steps
    assert run(["play", "FactoryReach-v0", "--seed", "3", "--video", str(video), "--json"]) == 0
    captured = capsys.readouterr()
    steps = json.loads(next(ln for ln in captured.out.splitlines() if ln.startswith("{")))["mean_length"]
    assert "steps/s" in captured.err and "ETA" in captured.err
    with imageio.get_reader(video) as r:
        assert r.get_data(0).shape == (360, 480, 3)
        assert r.count_frames() == 1 + steps // 2 + (steps % 2)
    assert run(["play", "FactoryReach-v0", "--video", str(video), "--video-size", "big"]) == 2
    assert "--video-size must be WIDTHxHEIGHT" in capsys.readouterr().err
    assert run(["play", "FactoryReach-v0", "--faults", "meteor"]) == 2
    assert "unknown fault families ['meteor']" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["reach.mp4"]  # no temporary file left behind


def test_a_failed_recording_leaves_the_old_video_untouched(tmp_path):
    from agents.tools.play import VideoWriter

    video = tmp_path / "keep.mp4"
    video.write_bytes(b"a video someone saved")
    with pytest.raises(RuntimeError, match="policy crashed"), VideoWriter(video, fps=20) as w:
        w.append(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("policy crashed")
    assert video.read_bytes() == b"a video someone saved"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_play_rejects_bad_video_suffix(capsys):
    assert run(["play", "FactoryReach-v0", "--video", "out.avi"]) == 2


def test_console_script_exit_code_on_bad_layout(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\nrobots = []\nextra_key = 1\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from agents.cli import main; main()", "layout", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "extra_key: unknown key" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bench_prints_machine_readable_lines(capsys):
    args = ["bench", "--env", "FactoryReach-v0", "--steps", "40", "--repeats", "1", "--procs", "2"]
    assert run([*args, "--envs-per-worker", "2"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    figures = {ln.split()[0].split(".", 1)[1]: float(ln.split()[1]) for ln in lines}
    assert {"overhead_ratio", "camera_fps_640x480", "whole_episode_steps_per_env"} <= set(figures)
    for n in (1, 2):  # the pool beside the machine's ceiling measured in the same run
        assert figures[f"ceiling_steps_per_s_{n}proc"] > 0
        for mode in ("async", "sync"):
            ratio = figures[f"pool_{mode}_vs_ceiling_{n}proc"]
            # each printed to 4 significant digits: up to 5e-4 of rounding each, three of them
            assert ratio == pytest.approx(
                figures[f"pool_{mode}_steps_per_s_{n}proc"] / figures[f"ceiling_steps_per_s_{n}proc"], rel=2e-3
            )
    assert run(["bench", "--env", "FactoryReach-v0", "--envs-per-worker", "0"]) == 2


def _learning_bench():
    """``bench/learning.py`` as a module."""
    bench = importlib.util.spec_from_file_location("learning_bench", ROOT / "bench" / "learning.py")
    learning = importlib.util.module_from_spec(bench)
    sys.path.insert(0, str(ROOT / "bench"))  # its own imports (provenance)
    sys.modules[bench.name] = learning  # its dataclasses look their module up
    try:
        bench.loader.exec_module(learning)
    finally:
        sys.path.remove(str(ROOT / "bench"))
        del sys.modules[bench.name]
    return learning


def _png_size(path) -> tuple[int, int]:
    import struct

    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_curves_of_many_rows_get_a_panel_each(tmp_path):
    learning = _learning_bench()

    def runs(n_cells):
        return [
            {
                "cell": f"Toy-v0-sac-row-{c}",
                "seed": seed,
                "curve": [(1000 * k, 10.0 * k, min(1.0, 0.1 * k * (seed + 1))) for k in range(1, 6)],
                "success": 0.5,
                "policy_step": 5000,
            }
            for c in range(n_cells)
            for seed in range(3)
        ]

    few, many = tmp_path / "few.png", tmp_path / "many.png"
    learning.plot("Toy-v0", runs(learning.GRID_ABOVE), few)
    learning.plot("Toy-v0", runs(learning.GRID_ABOVE + 3), many)
    w_few, _ = _png_size(few)
    w_many, h_many = _png_size(many)
    # a grid of four panels a row, three rows for nine cells, wider than the two panels of few cells
    assert w_many > w_few and h_many == pytest.approx((1.2 + 2.6 * 3) * 110, abs=2)


@pytest.mark.slow
def test_learning_bench_writes_its_table_and_curves(tmp_path):
    cmd = [sys.executable, "bench/learning.py", "--matrix", "cpu", "--seeds", "1", "--cells", "FactoryReach-v0-sac"]
    cmd += ["--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    figures = {ln.split()[0]: float(ln.split()[1]) for ln in proc.stdout.splitlines()}
    assert figures["FactoryReach-v0-sac.success_mean"] >= 0.9
    (row,) = json.loads((tmp_path / "table.json").read_text())["rows"]
    assert (row["algorithm"], row["demos"], row["budget_steps"], row["seeds"]) == ("SAC", 0, 4500, 1)
    assert row["success_mean"] == figures["FactoryReach-v0-sac.success_mean"]
    table = (tmp_path / "table.md").read_text()
    assert (
        "| FactoryReach-v0 | SAC | - | 4,500 env steps | 1 |" in table and "twin train --env FactoryReach-v0" in table
    )
    assert (tmp_path / "curves_FactoryReach-v0.png").stat().st_size > 10_000
    # each run records the machine it trained on, and a row names the machines of its runs: a
    # table's runs may come from several (written again with --rescore, nothing trained)
    doc = json.loads((tmp_path / "table.json").read_text())
    (run,) = doc["runs"]
    assert run["machine"] == doc["machine"] and row["hardware"].startswith(f"{doc['machine']}; ")
    other = {**run, "seed": 1, "machine": "2 x Other CPU"}
    (tmp_path / "table.json").write_text(json.dumps({**doc, "machine": "2 x Later CPU", "runs": [run, other]}))
    proc = subprocess.run([*cmd, "--seeds", "2", "--rescore"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "table.json").read_text())
    (row,) = doc["rows"]
    assert row["seeds"] == 2 and row["hardware"].startswith(f"{run['machine']} and 2 x Other CPU; ")
    assert [r["machine"] for r in doc["runs"]] == [run["machine"], "2 x Other CPU"]


def test_learning_bench_refuses_a_cell_its_matrix_lacks(tmp_path):
    cmd = [sys.executable, "bench/learning.py", "--matrix", "smoke", "--cells", "FactoryReach-v0-sac", "nope-sac"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert "--cells: no cell nope-sac in the smoke matrix" in proc.stderr
    assert "FactoryReach-v0-sac-8s" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_learning_bench_scores_an_imitation_cell_on_the_suite_beside_the_expert(tmp_path):
    cmd = [sys.executable, "bench/learning.py", "--matrix", "imitation", "--seeds", "1", "--only", "FactoryReach-v0"]
    cmd += ["--algos", "dagger", "--variants", "nominal", "--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    figures = {ln.split()[0]: float(ln.split()[1]) for ln in proc.stdout.splitlines()}
    doc = json.loads((tmp_path / "table.json").read_text())
    assert doc["suite"] == "standard-v3" and doc["commit"] and doc["machine"]
    (row,) = doc["rows"]
    assert (row["task"], row["algorithm"], row["seeds"]) == ("FactoryReach-v0", "DAgger", 1)
    # scored by twin eval on the suite's 100 nominal seeds, the expert on the same episodes
    episodes = [
        json.loads(ln)
        for ln in (tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0" / "suite" / "episodes.jsonl")
        .read_text()
        .splitlines()
    ]
    assert len(episodes) == 100 and {e["variant"] for e in episodes} == {"nominal"}
    assert row["success_median"] == sum(e["success"] for e in episodes) / 100
    assert row["success_median"] >= 0.9
    assert row["expert"] == {"nominal": figures["FactoryReach-v0.expert.nominal.success"]}
    assert row["of_expert"] == pytest.approx(row["success_median"] / row["expert"]["nominal"])
    assert figures["FactoryReach-v0-dagger-1200s.of_expert"] == pytest.approx(row["of_expert"], abs=1e-3)
    assert "| FactoryReach-v0 | DAgger |" in (tmp_path / "table.md").read_text()
    # scored again on another variant, with no training: the row keeps its nominal score and run
    trained = (tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0" / "eval.json").read_text()
    again = [*cmd[: cmd.index("--variants")], "--variants", "randomized", "--device", "cpu", "--rescore"]
    proc = subprocess.run([*again, "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0" / "eval.json").read_text() == trained
    part = tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0" / "suite-randomized" / "episodes.jsonl"
    episodes = [json.loads(ln) for ln in part.read_text().splitlines()]
    assert len(episodes) == 100 and {e["variant"] for e in episodes} == {"randomized"}
    (rescored,) = json.loads((tmp_path / "table.json").read_text())["rows"]
    assert rescored["variants_median"] == {
        "nominal": row["success_median"],
        "randomized": sum(e["success"] for e in episodes) / 100,
    }
    assert list(rescored["expert"]) == ["nominal", "randomized"]
    assert rescored["expert"]["nominal"] == row["expert"]["nominal"]
    # a bench run again with --keep-trained keeps the trained run and the parts of the suite it was
    # scored on, evaluates only the variant they lack, and reports the commit the run trained on
    run_dir = tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0"
    nominal_part = (run_dir / "suite" / "episodes.jsonl").read_text()
    made = json.loads((tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0.bench.json").read_text())
    kept = [*cmd[: cmd.index("--variants")], "--variants", "nominal", "faults", "--device", "cpu", "--keep-trained"]
    proc = subprocess.run([*kept, "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "# kept FactoryReach-v0-dagger-1200s seed 0" in proc.stderr
    assert (run_dir / "eval.json").read_text() == trained
    assert (run_dir / "suite" / "episodes.jsonl").read_text() == nominal_part
    faults = [json.loads(ln) for ln in (run_dir / "suite-faults" / "episodes.jsonl").read_text().splitlines()]
    assert len(faults) == 100 and {e["variant"] for e in faults} == {"faults"}
    doc = json.loads((tmp_path / "table.json").read_text())
    (kept_row,) = doc["rows"]
    assert kept_row["variants_median"] == {  # the randomized part scored before stays in the row
        "nominal": row["success_median"],
        "randomized": rescored["variants_median"]["randomized"],
        "faults": sum(e["success"] for e in faults) / 100,
    }
    assert [r["commit"] for r in doc["runs"]] == [made["commit"]]
    # a kept run with no note beside it (trained before the bench wrote them) takes the table's
    (tmp_path / "runs" / "FactoryReach-v0-dagger-1200s-s0.bench.json").unlink()
    proc = subprocess.run([*kept, "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (again_row,) = json.loads((tmp_path / "table.json").read_text())["runs"]
    assert again_row["commit"] == made["commit"]
    # its end to end: the run's seconds and its suite parts' (from their scorecards' pace), none made now
    parts = [
        json.loads((run_dir / d / "results.json").read_text()) for d in ("suite", "suite-faults", "suite-randomized")
    ]
    paced = sum(60 * len(d["episodes"]) / d["scorecard"]["episodes_per_minute"] for d in parts)
    ran = json.loads(trained)["run_seconds"]
    assert again_row["command_seconds"] == pytest.approx(ran + paced)
    # a run trained with other settings is not kept
    learning = _learning_bench()
    (cell,) = [c for c in learning.MATRICES["imitation"] if c.name == "FactoryReach-v0-dagger-1200s"]
    train = learning.train_command(cell, 0, run_dir, "cpu", None)
    assert learning.trained_as(run_dir, train)
    other = tmp_path / "other-run"
    shutil.copytree(run_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "lr": config["lr"] * 2}))
    assert not learning.trained_as(other, learning.train_command(cell, 0, other, "cpu", None))
    # a cell may continue another's runs with a longer budget, not with other settings
    longer = dataclasses.replace(cell, steps=cell.steps * 2, sets={**cell.sets, "eval_every": "999"})
    assert learning.same_but_resumable(train, learning.train_command(longer, 0, run_dir, "cpu", None)) == []
    assert learning.same_but_resumable(train, [*train, "--set", "lr=0.01"]) == ["lr"]


@pytest.mark.slow
def test_learning_bench_runs_a_residual_cell_on_its_base_and_ppo_at_sacs_wall_clock(tmp_path):
    cmd = [sys.executable, "bench/learning.py", "--matrix", "smoke", "--seeds", "1", "--device", "cpu"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    runs = tmp_path / "runs"
    residual = json.loads((runs / "FactoryReach-v0-sac-s0" / "config.json").read_text())
    assert Path(residual["base_policy"]).is_relative_to(runs / "FactoryReach-v0-bc-demos-s0")
    doc = json.loads((tmp_path / "table.json").read_text())
    rows = {r["algorithm"]: r for r in doc["rows"]}
    assert set(rows) == {
        "SAC",
        "BC",
        "SAC, residual on FactoryReach-v0-bc-demos",
        "PPO",
        "SAC (continued)",
        "SB3's SAC",
    }
    # SB3's SAC: a run folder as ours, held-out evaluations on our progress seeds, scored on its
    # final weights on the fixed seeds
    sb3_run = runs / "FactoryReach-v0-sb3-sac-s0"
    (sb3,) = [r for r in doc["runs"] if r["algo"] == "sb3-sac"]
    assert sb3["command"].startswith("python bench/bench_vs_sb3.py --env FactoryReach-v0 --steps 300")
    assert [p[0] for p in sb3["curve"]] == [100, 200, 300] and sb3["steps"] == 300
    episodes = json.loads((sb3_run / "eval.json").read_text())["episodes"]
    assert [e["seed"] for e in episodes] == list(range(1_000_000, 1_000_010))
    assert sb3["success"] == sum(e["success"] for e in episodes) / 10
    assert rows["SB3's SAC"]["final_weights"] and rows["SB3's SAC"]["best_heldout_median"] == max(
        p[2] for p in sb3["curve"]
    )
    # PPO's budget is SAC's training seconds, and its run was capped there
    sac = [r for r in doc["runs"] if r["cell"] == "FactoryReach-v0-sac-8s"]
    assert rows["PPO"]["budget_seconds"] == round(sac[0]["train_seconds"]) > 0
    ppo = json.loads((runs / "FactoryReach-v0-ppo-s0" / "config.json").read_text())
    assert ppo["max_seconds"] == rows["PPO"]["budget_seconds"]
    # the best held-out evaluation while training, beside the row's score
    assert rows["SAC"]["best_heldout_median"] == max(p[2] for p in sac[0]["curve"])
    assert rows["BC"]["best_heldout_median"] is None
    # the continuing cell trained on from the SAC run's last checkpoint: its curve starts as that
    # run's, its clock and step go on from it, and its row says so
    first, longer = runs / "FactoryReach-v0-sac-8s-s0", runs / "FactoryReach-v0-sac-14s-continued-s0"
    ended = json.loads((first / "eval.json").read_text())
    made = json.loads((runs / "FactoryReach-v0-sac-14s-continued-s0.bench.json").read_text())
    source_made = json.loads((runs / "FactoryReach-v0-sac-8s-s0.bench.json").read_text())
    assert made["continues"] == {"run": first.name, "step": ended["step"], "commit": source_made["commit"]}
    before = (first / "metrics.jsonl").read_text().splitlines()
    after = (longer / "metrics.jsonl").read_text().splitlines()
    assert after[: len(before)] == before and len(after) > len(before)
    times = [json.loads(x)["time"] for x in after]
    assert times == sorted(times)
    went_on = json.loads((longer / "eval.json").read_text())
    assert went_on["step"] > ended["step"] and went_on["train_seconds"] > ended["train_seconds"]
    (cont,) = [r for r in doc["runs"] if r["cell"] == "FactoryReach-v0-sac-14s-continued"]
    assert cont["continues"] == made["continues"] and cont["command"].endswith("--resume")
    assert rows["SAC (continued)"]["continues_steps"] == [ended["step"]]
    assert cont["command_seconds"] > sac[0]["command_seconds"]
    # a residual cell whose base was never run is refused before anything trains
    other = tmp_path / "other"
    proc = subprocess.run([*cmd, "--algos", "sac", "--out", str(other)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "FactoryReach-v0-bc-demos" in proc.stderr and "first" in proc.stderr
    assert not (other / "runs").exists()


def test_training_bench_times_the_cloning_term_against_the_same_updates_without_it():
    import torch

    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cpu, demos = torch.device("cpu"), {"demos": "demos.safetensors", "actor_every": "1"}
    plain = bench.sac_updater(cpu, "eager", 32, extra=demos)
    cloning = bench.sac_updater(cpu, "eager", 32, extra={**demos, "bc_weight": "1"})
    assert not plain.hp.bc_rows and cloning.hp.bc_rows == 16  # the batch's demo half is cloned
    rates = bench.updates_per_s([plain, cloning], n=3, reps=2)
    assert len(rates) == 2 and all(r > 0 for r in rates)


@pytest.mark.slow
def test_training_bench_prints_its_figures():
    import subprocess
    import sys

    cmd = [sys.executable, "bench/bench_train.py", "--env", "FactoryReach-v0", "--workers", "1"]
    cmd += ["--envs-per-worker", "2", "--iters", "1", "--skip-updates", "--vision-env", "FactoryReach-v0"]
    cmd += ["--image-sizes", "32"]
    proc = subprocess.run([*cmd, "--sac-set", "updates_per_step=2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    figures = {ln.split()[0]: float(ln.split()[1]) for ln in proc.stdout.splitlines()}
    for name in (
        "bare_pool_steps_per_s_2env",
        "ppo_collecting_vs_bare",
        "ppo_update_fraction",
        "sac_whole_run_vs_bare",
    ):
        assert figures[name] > 0, name
    # SAC's learner on the cores the one worker leaves free, against every core where they differ
    cores = len(os.sched_getaffinity(0))
    assert figures["sac_learner_threads"] == max(1, cores - 1)
    if cores > 1:
        assert figures["sac_learner_threads_every_core"] == cores and figures["sac_every_core_vs_shared"] > 0
    # DAgger's image fit on one thread against every core, where there are several
    if cores > 1:
        assert figures["dagger_image_updates_per_s_32px_1thread"] > 0
        assert figures[f"dagger_image_updates_per_s_32px_{cores}threads"] > 0
        assert figures["dagger_image_fit_every_core_vs_one_32px"] > 0
    else:
        assert figures["dagger_image_updates_per_s_32px"] > 0
    bad = subprocess.run([*cmd, "--sac-set", "updates_per_step"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "'updates_per_step': expected KEY=VALUE" in bad.stderr
    bad = subprocess.run([*cmd, "--sac-set", "updates_per_step=99"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--sac-set" in bad.stderr and "updates_per_step" in bad.stderr
    assert not bad.stdout  # refused before anything ran
    bad = subprocess.run([*cmd, "--image-sizes", "16"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--image-sizes 16" in bad.stderr and "32 to 256" in bad.stderr and not bad.stdout


def test_commands_take_module_env_ids(tmp_path, capsys):
    env_id = "panda_gym:PandaReach-v3"
    assert run(["play", env_id, "--policy", "random", "--episodes", "1", "--json"]) == 0
    summary = json.loads(next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")))
    assert summary["episodes"] == 1 and summary["env"] == env_id
    # panda-gym has no scripted expert: said, exit 2
    assert run(["play", env_id]) == 2
    assert "has no scripted expert" in capsys.readouterr().err
    assert run(["demos", env_id, "--episodes", "1", "--out", str(tmp_path / "d.safetensors")]) == 2
    assert "has no scripted expert" in capsys.readouterr().err
    assert run(["bench", "--env", env_id, "--steps", "20", "--repeats", "1", "--procs", "1", "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{env_id}.env_steps_per_s" in out and f"{env_id}.pool_async_vs_ceiling_1proc" in out
    assert run(["play", "nope_module:Foo-v0"]) == 2
    assert "cannot import module 'nope_module'" in capsys.readouterr().err


def test_eval_suite_with_a_module_env_id(tmp_path, capsys):
    suite = tmp_path / "panda.toml"
    suite.write_text('name = "panda"\n[[tasks]]\nenv_id = "panda_gym:PandaReach-v3"\nseeds = [0, 1]\n')
    assert (
        run(["eval", "--policy", "random", "--suite", str(suite), "--out", str(tmp_path / "r"), "--videos", "0"]) == 0
    )
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [r["task"] for r in res["episodes"]] == ["panda_gym:PandaReach-v3"] * 2
    assert run(["eval", "--policy", "expert", "--suite", str(suite), "--out", str(tmp_path / "e")]) == 2
    assert "no scripted expert for panda_gym:PandaReach-v3" in capsys.readouterr().err


def test_demos_warn_when_the_noise_makes_the_expert_fail(tmp_path, capsys):
    # the peg's 1 mm clearance: the expert jams the peg with DART noise of 0.1 on its actions
    assert run(["demos", "PegInsert-v0", "--episodes", "2", "--noise", "0.1", "--out", str(tmp_path / "p.st")]) == 0
    captured = capsys.readouterr()
    assert "expert success 0.000" in captured.out
    assert "the expert succeeded in 0% of these episodes" in captured.err and "lower --noise" in captured.err
    assert run(["demos", "PegInsert-v0", "--episodes", "2", "--out", str(tmp_path / "q.st")]) == 0
    assert "expert succeeded" not in capsys.readouterr().err
