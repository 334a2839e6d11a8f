"""Each fault family, switched on through the seeded timeline, changes what it says it changes:
the beam-break, the inspection sensor, the AGV's scanner and drives, the wafer robot's axes and
vacuum, and the suction cup's seal. Each test compares the faulted twin with the nominal one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.twin.test_fab import _slide, _wafer_on_paddle
from twin import Twin
from twin.layout import CellLayout, load_layout

ALWAYS = {"rate": 60.0, "duration": [600.0, 600.0]}
"""A fault that starts within the first seconds and outlasts the test."""


def _with(layout: str | CellLayout, faults: dict) -> CellLayout:
    data = (load_layout(layout) if isinstance(layout, str) else layout).model_dump()
    data["faults"] = faults
    return CellLayout.model_validate(data)


def _on(twin: Twin, family: str) -> bool:
    return any(f.family == family for f in twin.disturbances.timeline.active)


def _until_on(twin: Twin, family: str, limit_s: float = 30.0) -> None:
    for _ in range(round(limit_s / twin.control_dt)):
        if _on(twin, family):
            return
        twin.step()
    raise AssertionError(f"no {family} fault started within {limit_s} s")


def _run(twin: Twin, seconds: float) -> None:
    for _ in range(round(seconds / twin.control_dt)):
        twin.step()


def test_a_blind_beam_lets_a_part_pass_unseen_and_wait_at_the_end_stop():
    fast = load_layout("default").model_dump()
    fast["conveyors"][0]["speed"] = 0.3  # parts reach the end within seconds
    nominal = Twin(CellLayout.model_validate(fast))
    blind = Twin(_with(CellLayout.model_validate(fast), {"beam_missed": {"rate": 60.0, "duration": [12.0, 12.0]}}))
    try:
        for t in (nominal, blind):
            t.reset(np.random.default_rng(1))
        _until_on(blind, "beam_missed")
        started = blind.sim_time
        while nominal.sim_time < started:
            nominal.step()
        _run(nominal, 9.0)
        _run(blind, 9.0)
        missed = [e for e in nominal.log.events if e.kind == "missed"]
        assert missed, "with a working beam, an unpicked part is seen at the end and logged missed"
        assert not any(e.kind == "missed" for e in blind.log.events)
        waiting = blind.part(missed[0].part)
        assert waiting.state == "on_conveyor"  # still in play: a robot may still take it from the stop
        belt = blind.conveyors["conveyor-0"]
        assert belt.near_beam(waiting.xyz, margin=0.0)  # past the beam, against the stop
        assert not blind.all_parts_done  # the episode does not end on a part nobody saw
    finally:
        nominal.close()
        blind.close()


def test_a_blind_beam_keeps_the_waiting_part_the_target_the_policy_observes():
    import gymnasium as gym

    import envs  # noqa: F401

    layout = load_layout("default").model_dump()
    layout["conveyors"][0]["speed"] = 0.3
    layout["faults"] = {"beam_missed": ALWAYS}
    targets = {}
    for name, faults in (("nominal", "none"), ("blind", ["beam_missed"])):
        env = gym.make("ConveyorPick-v0", layout=CellLayout.model_validate(layout), faults=faults)
        try:
            env.reset(seed=3)
            task = env.unwrapped.task
            hold = np.zeros(env.action_space.shape, np.float32)
            for _ in range(200):  # 10 s of doing nothing: the first part rides to the end
                env.step(hold)
            part = task.target_part()
            targets[name] = (part.name if part else None, env.unwrapped.twin.log.count("missed"))
        finally:
            env.close()
    first = "part-" in (targets["blind"][0] or "")
    assert first and targets["blind"][1] == 0
    assert targets["nominal"][1] >= 1 and targets["nominal"][0] != targets["blind"][0]


def test_an_inspection_error_makes_readings_wrong_at_its_rate():
    twin = Twin(_with("bin_sort", {"inspection_error": {**ALWAYS, "error": 1.0}}))
    try:
        twin.reset(np.random.default_rng(2))
        _until_on(twin, "inspection_error")
        since = twin.sim_time
        _run(twin, 40.0)
        truth = {e.part: e.defect is not None for e in twin.log.events if e.kind == "arrived"}
        read = [(e.part, e.detail == "reject") for e in twin.log.events if e.kind == "inspected" and e.t >= since]
        assert len(read) >= 3
        assert all(rejected != truth[p] for p, rejected in read)  # every verdict wrong while it lasts
    finally:
        twin.close()


OPEN_FLOOR = """
name = "open"
[floor]
size = [20.0, 20.0]
[physics]
substeps = 24
[[agvs]]
position = [0.0, 0.0]
scanner = { beams = 72, noise = 0.0 }
[[walls]]
start = [4.0, -3.0]
end = [4.0, 3.0]
"""


def _floor(tmp_path, faults: dict | None) -> Twin:
    path = tmp_path / "open.toml"
    path.write_text(OPEN_FLOOR)
    layout = load_layout(path)
    return Twin(_with(layout, faults) if faults else layout)


@pytest.mark.parametrize("mode", ["dropped", "noisy"])
def test_a_scanner_fault_drops_the_scan_or_adds_noise(tmp_path, mode):
    nominal, faulty = (
        _floor(tmp_path, None),
        _floor(tmp_path, {"scanner_fault": {**ALWAYS, "modes": [mode], "noise": 0.3}}),
    )
    try:
        for t in (nominal, faulty):
            t.reset(np.random.default_rng(0))
        _until_on(faulty, "scanner_fault")
        while nominal.sim_time < faulty.sim_time:
            nominal.step()
        clean, scan = nominal.fleet.scans[0], faulty.fleet.scans[0]
        max_range = faulty.layout.agvs[0].scanner.max_range
        assert clean[0] == pytest.approx(4.0 - 0.025, abs=0.05)  # the wall ahead, seen by the nominal scanner
        if mode == "dropped":
            assert np.all(scan == max_range)
        else:
            diff = (scan - clean)[clean < max_range - 1.0]  # beams that hit something (not clipped at the range)
            assert 0.15 < diff.std() < 0.45
    finally:
        nominal.close()
        faulty.close()


def test_a_slowdown_caps_the_agvs_speed(tmp_path):
    speeds = {}
    for name, faults in (("nominal", None), ("slow", {"joint_slowdown": {**ALWAYS, "speed_scale": 0.4}})):
        twin = _floor(tmp_path, faults)
        try:
            twin.reset(np.random.default_rng(0))
            if faults:
                _until_on(twin, "joint_slowdown")
            agv = twin.fleet.agvs[0]
            for _ in range(25):  # 2.5 s at full command: long enough to reach either limit
                agv.command(10.0, 0.0)
                twin.step()
            speeds[name] = agv.vel[0]
        finally:
            twin.close()
    max_speed = load_layout(tmp_path / "open.toml").agvs[0].max_speed
    assert speeds["nominal"] == pytest.approx(max_speed, rel=0.05)
    assert speeds["slow"] == pytest.approx(0.4 * max_speed, rel=0.05)


def test_a_slowdown_caps_the_wafer_robots_axes():
    rates = {}
    for name, faults in (("nominal", None), ("slow", {"joint_slowdown": {**ALWAYS, "speed_scale": 0.4}})):
        twin = Twin(_with("fab", faults) if faults else "fab")
        try:
            twin.reset(np.random.default_rng(0))
            if faults:
                _until_on(twin, "joint_slowdown")
            robot = twin.fab.robot
            q0 = robot.joint_state()[0][0]
            for _ in range(20):  # 1 s of turning at the full commanded rate
                robot.command(10.0, 0.0, 0.0)
                twin.step()
            rates[name] = (robot.joint_state()[0][0] - q0) / (20 * twin.control_dt)
        finally:
            twin.close()
    top = twin.fab.robot.spec.max_rates[0]
    assert rates["nominal"] == pytest.approx(top, rel=0.1)
    assert rates["slow"] == pytest.approx(0.4 * top, rel=0.1)


def test_a_grasp_slip_weakens_the_wafer_vacuum_until_the_wafer_slides():
    slides = {}
    for name, faults in (("nominal", None), ("slip", {"grasp_slip": {**ALWAYS, "grip_scale": 0.25}})):
        twin = Twin(_with("fab", faults) if faults else "fab")
        try:
            twin.reset(np.random.default_rng(0))
            robot, wafer = _wafer_on_paddle(twin, vacuum=True)  # (resets the robot, and so its grip)
            if faults:
                _until_on(twin, "grasp_slip")  # the wafer held still on the paddle meanwhile
            slides[name] = _slide(twin, robot, wafer, accel=3.0)  # m/s^2: within what the full vacuum holds
        finally:
            twin.close()
    assert slides["nominal"] < 0.5  # mm
    assert slides["slip"] > 2.0


def test_a_grasp_slip_weakens_the_suction_seal_until_the_part_tears_off():
    layout = load_layout("default")
    robot_cfg = layout.robots[0].model_copy(update={"tool": "suction"})
    cup = layout.model_copy(update={"robots": [robot_cfg]})
    kept = {}
    for name, faults in (("nominal", None), ("slip", {"grasp_slip": {**ALWAYS, "grip_scale": 0.05}})):
        twin = Twin(_with(cup, faults) if faults else cup)
        try:
            twin.reset(np.random.default_rng(1))
            if faults:
                _until_on(twin, "grasp_slip")
            while not any(p.state == "on_conveyor" for p in twin.parts):
                twin.step()
            part = next(p for p in twin.parts if p.state == "on_conveyor")
            r = twin.robots[0]
            twin.command_tool(r, close=True)
            for _ in range(80):  # the cup down onto the part's top face
                target = part.pos + np.array([0, 0, part.spec.half_height - 0.002])
                ee = r.ee_state()[0]
                r.move_ee_to(ee + np.clip(target - ee, -0.02, 0.02))
                twin.step()
                if r.held_part is not None:
                    break
            assert r.held_part == part.id  # a seal forms either way: the leak shows under load
            for _ in range(20):
                r.move_ee_to(r.ee_state()[0] + np.array([0, 0, 0.02]))
                twin.step()
            kept[name] = part.state == "held" and r.held_part == part.id
            weight = part.spec.mass * 9.81
        finally:
            twin.close()
    assert kept["nominal"] and not kept["slip"]
    assert 0.05 * layout.robots[0].suction_force < weight < layout.robots[0].suction_force
    assert math.isfinite(weight)
