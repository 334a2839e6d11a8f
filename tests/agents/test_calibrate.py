"""Calibration from a plant's log: the 'plant' is a twin run with parameters the calibration does
not know, its log roughened with sensor noise and lost rows."""

from __future__ import annotations

import json

import pytest

pa = pytest.importorskip("pyarrow")

from agents.cli import run as twin  # noqa: E402
from agents.tools.play import run_episodes  # noqa: E402
from twin.paths import LAYOUTS_DIR  # noqa: E402
from twin.telemetry.calibrate import relative_error  # noqa: E402
from twin.telemetry.files import roughen  # noqa: E402


@pytest.fixture(scope="module")
def plants(tmp_path_factory):
    root = tmp_path_factory.mktemp("plants")
    tend = (LAYOUTS_DIR / "machine_tending.toml").read_text()
    tend = tend.replace("process_time = [4.0, 5.0]", "process_time = [5.0, 6.0]")
    tend = tend.replace("process_time = [9.0, 11.0]", "process_time = [8.0, 9.5]")
    (root / "tend.toml").write_text(tend)
    run_episodes(
        "MachineTend-v1",
        "expert",
        10,
        0,
        telemetry=root / "tend",
        telemetry_rate=5,
        env_kwargs={"layout": str(root / "tend.toml")},
    )
    roughen(root / "tend", 0, lost=0.03)
    pick = (LAYOUTS_DIR / "default.toml").read_text()
    assert "interval = [5.0, 7.0]" in pick and "speed = 0.1\n" in pick
    pick = pick.replace("interval = [5.0, 7.0]", "interval = [4.0, 5.0]").replace("speed = 0.1\n", "speed = 0.12\n")
    # and a slower robot than the layout's (a parameter no log shows: fitted by search)
    assert 'tool = "parallel_gripper"\n' in pick
    pick = pick.replace('tool = "parallel_gripper"\n', 'tool = "parallel_gripper"\nspeed_override = 0.8\n', 1)
    (root / "pick.toml").write_text(pick)
    run_episodes(
        "ConveyorPick-v1",
        "expert",
        12,
        0,
        telemetry=root / "pick",
        telemetry_rate=5,
        env_kwargs={"layout": str(root / "pick.toml")},
    )
    roughen(root / "pick", 1, lost=0.03)
    return root


@pytest.mark.slow
def test_calibration_recovers_the_plants_process_times_and_the_twin_moves_closer(plants, tmp_path):
    out = tmp_path / "tend"
    fit = "machines.0.process_time,machines.1.process_time"
    assert (
        twin(
            [
                "calibrate",
                str(plants / "tend"),
                "--layout",
                "machine_tending",
                "--fit",
                fit,
                "--out",
                str(out),
                "--episodes",
                "6",
            ]
        )
        == 0
    )
    doc = json.loads((out / "calibration.json").read_text())
    params = doc["parameters"]
    assert relative_error(params["machines.0.process_time"]["value"], [5.0, 6.0]) < 0.10
    assert relative_error(params["machines.1.process_time"]["value"], [8.0, 9.5]) < 0.10
    assert params["machines.0.process_time"]["before"] == [4.0, 5.0]
    assert all(u > 0 for u in params["machines.0.process_time"]["uncertainty"])
    before, after = doc["fidelity"]["before"], doc["fidelity"]["after"]
    assert after["wasserstein_s"] < before["wasserstein_s"]
    assert after["throughput_error"] < before["throughput_error"]
    # the calibrated layout is a layout the twin runs, and reads back with the fitted values
    from twin.layout import load_layout

    layout = load_layout(out / "layout.toml")
    assert list(layout.machines[0].process_time) == params["machines.0.process_time"]["value"]
    for label in ("before", "after"):
        assert (out / f"fidelity-{label}" / "report.html").is_file()


@pytest.mark.slow
def test_calibration_recovers_a_feeders_interval_and_a_belts_speed(plants, tmp_path):
    out = tmp_path / "pick"
    fit = "feeders.0.interval,conveyors.0.speed"
    assert (
        twin(
            [
                "calibrate",
                str(plants / "pick"),
                "--layout",
                "default",
                "--fit",
                fit,
                "--out",
                str(out),
                "--episodes",
                "4",
            ]
        )
        == 0
    )
    params = json.loads((out / "calibration.json").read_text())["parameters"]
    assert relative_error(params["feeders.0.interval"]["value"], [4.0, 5.0]) < 0.10
    assert relative_error(params["conveyors.0.speed"]["value"], 0.12) < 0.10


@pytest.mark.slow
def test_a_robots_speed_override_is_found_by_search_over_twin_runs_and_the_search_resumes(plants, tmp_path, capsys):
    out = tmp_path / "drive"
    args = [
        "calibrate",
        str(plants / "pick"),
        "--layout",
        "default",
        "--fit",
        "feeders.0.interval,conveyors.0.speed,robots.0.speed_override",
        "--range",
        "robots.0.speed_override=0.5:1.0",
        "--rounds",
        "3",
        "--points",
        "4",
        "--search-episodes",
        "4",
        "--episodes",
        "6",
        "--out",
        str(out),
    ]
    assert twin(args) == 0
    doc = json.loads((out / "calibration.json").read_text())
    p = doc["parameters"]["robots.0.speed_override"]
    search = doc["search"]
    runs = {json.dumps(c["values"]) for c in search["candidates"]}  # a point may come back a round later
    assert len(search["candidates"]) == 12 and search["resumed"] == 0
    assert p["method"] == "search" and p["before"] == 1.0 and p["samples"] == len(runs)
    assert abs(p["value"] - 0.8) <= 0.08, p  # within 10%
    assert 0 < p["uncertainty"] <= 0.04  # half the last round's grid step
    assert doc["parameters"]["feeders.0.interval"]["method"] == "log"
    # the closest candidate is the fitted one, and the search found the plant closer than the layout
    start = min(c["distance"] for c in search["candidates"] if c["values"]["robots.0.speed_override"] == 1.0)
    assert search["distance"] < start
    assert (out / "search.png").stat().st_size > 10_000
    from twin.layout import load_layout

    assert load_layout(out / "layout.toml").robots[0].speed_override == p["value"]
    # a search cut short resumes: the candidates done are kept (here: all), nothing is run again
    (out / "calibration.json").unlink()
    capsys.readouterr()
    assert twin(args) == 0
    again = json.loads((out / "calibration.json").read_text())
    assert again["search"]["resumed"] == len(runs)
    assert again["parameters"]["robots.0.speed_override"]["value"] == p["value"]
    # ... but not with other inputs
    (out / "calibration.json").unlink()
    assert twin([*args[:-6], "--episodes", "6", "--search-episodes", "3", "--out", str(out)]) == 2
    assert "holds a search with other inputs (episodes differ)" in capsys.readouterr().err


def test_a_searched_parameter_needs_a_range_within_the_layouts_bounds(plants, tmp_path, capsys):
    out = tmp_path / "x"
    base = ["calibrate", str(plants / "pick"), "--layout", "default", "--out", str(out)]
    assert twin([*base, "--fit", "robots.0.speed_override"]) == 2
    assert "give its range, --range robots.0.speed_override=LO:HI" in capsys.readouterr().err
    assert twin([*base, "--fit", "robots.0.speed_override", "--range", "robots.0.speed_override=0.02:1.0"]) == 2
    err = capsys.readouterr().err
    assert "0.02 is outside the layout's bounds" in err and "speed_override" in err
    assert twin([*base, "--fit", "robots.0.speed_override", "--range", "robots.0.speed_override=fast"]) == 2
    assert "expected NAME=LO:HI" in capsys.readouterr().err
    assert twin([*base, "--fit", "conveyors.0.speed", "--range", "conveyors.0.speed=0.05:0.2"]) == 2
    assert "not a parameter this calibration searches" in capsys.readouterr().err
    assert twin([*base, "--fit", "robots.3.speed_override", "--range", "robots.3.speed_override=0.5:1"]) == 2
    assert "there is no robots[3]" in capsys.readouterr().err
    assert twin([*base, "--fit", "robots.0.speed_override", "--range", "robots.0.speed_override=1:0.5"]) == 2
    assert "must be below HI" in capsys.readouterr().err
    assert not out.exists()


def test_calibration_refuses_what_it_cannot_fit(plants, tmp_path, capsys):
    out = tmp_path / "x"
    base = ["calibrate", str(plants / "tend"), "--layout", "machine_tending", "--out", str(out)]
    assert twin([*base, "--fit", "machines.0.friction"]) == 2
    assert "machines.0.friction" in capsys.readouterr().err
    assert twin([*base, "--fit", "machines.5.process_time"]) == 2
    assert "there is no machines[5]" in capsys.readouterr().err
    assert twin([*base, "--fit", "feeders.0.interval"]) == 2  # the machine-tending cell has no feeder
    assert "the layout has 0 feeders" in capsys.readouterr().err
    # a log of another cell: its assets are not in the layout
    other = ["calibrate", str(plants / "pick"), "--layout", "machine_tending", "--env", "MachineTend-v1"]
    assert twin([*other, "--fit", "machines.0.process_time", "--out", str(out)]) == 2
    assert "conveyor-0" in capsys.readouterr().err
    assert (
        twin(["calibrate", str(tmp_path), "--layout", "default", "--fit", "conveyors.0.speed", "--out", str(out)]) == 2
    )
    assert "not a telemetry folder" in capsys.readouterr().err
    assert not out.exists()
