from __future__ import annotations

import math

import numpy as np
import pytest

from twin import Twin
from twin.events import EventLog, compute_kpis
from twin.layout import load_layout


@pytest.fixture(scope="module")
def cell():
    t = Twin("default")
    yield t
    t.close()


def test_world_names_bodies_and_refuses_duplicates(world):
    world.create_box("crate-0", (0.1, 0.1, 0.1), (0, 0, 0.1), mass=1.0)
    assert world.body("crate-0") >= 0
    with pytest.raises(ValueError, match="already exists"):
        world.create_box("crate-0", (0.1, 0.1, 0.1), (0, 0, 0.1))
    with pytest.raises(KeyError, match="crate-1"):
        world.body("crate-1")


def test_world_save_and_restore_state(world):
    world.create_plane()
    world.create_box("crate-0", (0.05, 0.05, 0.05), (0, 0, 0.5), mass=1.0)
    state = world.save_state()
    world.step(240)
    fallen = world.pose("crate-0")[0][2]
    world.restore_state(state)
    assert fallen < 0.1
    assert world.pose("crate-0")[0][2] == pytest.approx(0.5)


def test_world_close_is_idempotent():
    from twin.world import World

    w = World()
    w.close()
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        _ = w.p


def test_reset_keeps_body_count_and_never_reloads(cell):
    rng = np.random.default_rng(0)
    cell.reset(rng)
    n = cell.world.num_bodies()
    for _ in range(3):
        for _ in range(20):
            cell.step()
        cell.reset(rng)
        assert cell.world.num_bodies() == n


def test_parts_waiting_off_stage_stay_at_their_parking_spot(cell):
    cell.reset(np.random.default_rng(0))
    for _ in range(60):  # 3 s: unsupported, a falling part would be 44 m down
        cell.step()
    waiting = [p for p in cell.parts if p.state in ("parked", "queued")]
    assert waiting
    for part in waiting:
        pos, _ = cell.world.pose(part.name)
        np.testing.assert_allclose(pos, part.park, atol=1e-6)


def _first_arrival(cell, seed=1):
    cell.reset(np.random.default_rng(seed))
    while not any(p.state == "on_conveyor" for p in cell.parts):
        cell.step()
    return next(p for p in cell.parts if p.state == "on_conveyor")


def test_conveyor_carries_parts_at_belt_speed(cell):
    part = _first_arrival(cell)
    for _ in range(10):
        cell.step()
    x0 = part.pos[0]
    for _ in range(40):
        cell.step()
    speed = (part.pos[0] - x0) / (40 * cell.control_dt)
    assert speed == pytest.approx(cell.layout.conveyors[0].speed, rel=0.03)
    assert abs(part.vel[1]) < 0.01


def test_unpicked_parts_reach_the_beam_break_and_are_missed(cell):
    part = _first_arrival(cell)
    conv = cell.conveyors["conveyor-0"]
    while part.state == "on_conveyor" and cell.sim_time < 60:
        cell.step()
    assert part.state == "missed"
    assert conv.beam.blocked
    ev = next(e for e in cell.log.events if e.kind == "missed")
    assert ev.part == part.name and "end of the conveyor" in ev.detail


def test_end_stop_holds_parts_on_the_belt(tmp_path):
    import tomllib

    import tomli_w

    from twin.paths import LAYOUTS_DIR

    data = tomllib.loads((LAYOUTS_DIR / "default.toml").read_text())
    data["conveyors"][0]["speed"] = 0.4
    path = tmp_path / "nobeam.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    t = Twin(path)
    try:
        part = _first_arrival(t)
        for _ in range(200):
            t.step()
        end = t.conveyors["conveyor-0"].center[0] + 0.8
        assert part.state == "missed"  # the beam saw it go past
        pos, vel = t.world.pose(part.name)[0], t.world.velocity(part.name)[0]
        assert end - 0.05 < pos[0] < end  # resting against the stop, still on the belt
        assert pos[2] > t.conveyors["conveyor-0"].surface_z and abs(vel[0]) < 0.02
    finally:
        t.close()


@pytest.mark.parametrize("model", ["panda", "iiwa"])
def test_suction_holds_only_after_real_contact(model):
    layout = load_layout("default")
    robot = layout.robots[0].model_copy(update={"tool": "suction", "model": model})
    t = Twin(layout.model_copy(update={"robots": [robot]}))
    try:
        part = _first_arrival(t)
        r = t.robots[0]
        t.command_tool(r, close=True)  # suction on, far above the part
        for _ in range(5):
            t.step()
        assert r.held_part is None
        # bring the cup down onto the part's top face
        for _ in range(80):
            target = part.pos + np.array([0, 0, part.spec.half_height - 0.002])
            ee = r.ee_state()[0]
            r.move_ee_to(ee + np.clip(target - ee, -0.02, 0.02))
            t.step()
            if r.held_part is not None:
                break
        assert r.held_part == part.id
        for _ in range(20):
            r.move_ee_to(r.ee_state()[0] + np.array([0, 0, 0.02]))
            t.step()
        assert part.state == "held" and part.pos[2] > t.conveyors["conveyor-0"].surface_z + 0.1
        t.command_tool(r, close=False)
        for _ in range(10):
            t.step()
        assert r.held_part is None and part.state != "held"
    finally:
        t.close()


def test_camera_images(cell):
    cell.reset(np.random.default_rng(0))
    cam = cell.cameras["top"]
    imgs = cam.capture()
    assert imgs.rgb.shape == (84, 84, 3) and imgs.rgb.dtype == np.uint8
    assert imgs.depth.shape == (84, 84) and 0.5 < float(np.median(imgs.depth)) < 2.0
    robot_id = cell.robots[0].id
    assert (imgs.segmentation == robot_id).any()
    assert cam.intrinsics[0, 0] > 0


def _log(events):
    log = EventLog()
    for t, kind, part in events:
        log.add(t, kind, part)
    return log


def test_kpis_on_a_hand_built_log():
    log = _log(
        [
            (0.0, "arrived", "a"),
            (2.0, "grasp", "a"),
            (3.0, "picked", "a"),
            (5.0, "placed", "a"),
            (4.0, "arrived", "b"),
            (6.0, "grasp", "b"),
            (7.0, "grasp", "b"),
            (8.0, "picked", "b"),
            (8.5, "dropped", "b"),
            (9.0, "grasp", "b"),
            (9.5, "picked", "b"),
            (13.0, "placed", "b"),
            (10.0, "arrived", "c"),
            (20.0, "missed", "c"),
        ]
    )
    k = compute_kpis(log, sim_time=36.0, energy=12.0)
    assert k["parts_arrived"] == 3 and k["parts_placed"] == 2
    assert k["place_rate"] == pytest.approx(2 / 3)
    assert k["throughput"] == pytest.approx(200.0)  # 2 parts in 36 s
    assert k["cycle_time_mean"] == pytest.approx(7.0)  # (5 - 0 + 13 - 4) / 2
    assert k["cycle_time_p50"] == pytest.approx(7.0)
    assert k["cycle_time_p95"] == pytest.approx(5 + 0.95 * 4)
    assert k["pick_attempts"] == 4 and k["picks"] == 3
    assert k["pick_success"] == pytest.approx(0.75)
    assert k["attempts_per_pick"] == pytest.approx(4 / 3)
    assert k["drops"] == 1 and k["missed"] == 1
    assert k["energy_per_part"] == pytest.approx(6.0)


def test_kpis_of_an_empty_log_are_nan_not_errors():
    k = compute_kpis(EventLog(), sim_time=0.0)
    assert k["parts_placed"] == 0
    assert math.isnan(k["throughput"]) and math.isnan(k["cycle_time_mean"])


def test_ik_step_is_the_damped_least_squares_step_with_null_space_pull(cell):
    """The one-solve IK step equals dq = z + J^T (J J^T + l^2 I)^-1 (e - J z), written out here."""
    from twin.robots import arm

    cell.reset(np.random.default_rng(0))
    r = cell.robots[0]
    target = [0.05 + v for v in r.ee_xyz()]
    q = np.array(r._joints()[0])
    lin, ang = cell.world.p.calculateJacobian(r.id, r.ee_link, [0, 0, 0], q.tolist(), r._zeros, r._zeros)
    jac = np.array((*lin, *ang))
    link = cell.world.p.getLinkState(r.id, r.ee_link)
    pos, m = link[4], np.array(cell.world.p.getMatrixFromQuaternion(link[5])).reshape(3, 3)
    down = np.array(cell.world.p.getMatrixFromQuaternion(arm.DOWN)).reshape(3, 3)
    rot = 0.5 * sum(np.cross(m[:, i], down[:, i]) for i in range(3))
    base = r._base_rot
    e = np.concatenate([base.T @ (np.array(target) - np.array(pos)), base.T @ rot])
    z = np.zeros_like(q)
    z[:7] = arm.NULL_GAIN * (np.array(r.spec.rest) - q[:7])
    lam2 = arm.DAMPING**2
    dq = z + jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), e - jac @ z)
    np.testing.assert_allclose(r._diff_ik(target), (q + dq)[:7], atol=1e-12)


def test_ee_control_tracks_a_target_with_the_tool_pointing_down(cell):
    cell.reset(np.random.default_rng(0))
    r = cell.robots[0]
    target = np.array(r.ee_xyz()) + np.array([0.08, -0.05, -0.06])
    for _ in range(40):
        ee = np.array(r.ee_xyz())
        r.move_ee_to(ee + np.clip(target - ee, -0.03, 0.03))
        cell.step()
    assert np.linalg.norm(np.array(r.ee_xyz()) - target) < 2e-3
    tool_z = np.array(cell.world.p.getMatrixFromQuaternion(r._ee()[2])).reshape(3, 3)[:, 2]
    assert tool_z[2] < -0.999  # the tool axis points at the floor


def test_part_position_array_follows_the_tracked_floats_and_is_read_only(cell):
    part = _first_arrival(cell)
    cell.step()
    np.testing.assert_array_equal(part.pos, part.xyz)
    np.testing.assert_array_equal(part.vel, part.vel_xyz)
    with pytest.raises(ValueError, match="read-only"):
        part.pos[2] += 1.0
    part.xyz = (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(part.pos, [1.0, 2.0, 3.0])
