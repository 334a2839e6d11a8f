"""The arms and tools: every model carries every tool, one controller drives them, and the reach
model that refuses layouts matches what each arm can really do."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.layouts import assert_refused, edited
from twin import Twin
from twin.layout import LayoutError, load_layout, with_robot
from twin.robots import MODELS, can_reach

COMBOS = [(m, t) for m in sorted(MODELS) for t in ("parallel_gripper", "suction")]


def _twin(model: str, tool: str = "parallel_gripper", layout: str = "workbench") -> Twin:
    lay = load_layout(layout)
    robot = lay.robots[0].model_copy(update={"model": model, "tool": tool})
    return Twin(lay.model_copy(update={"robots": [robot]}))


@pytest.mark.parametrize(("model", "tool"), COMBOS)
def test_every_arm_carries_every_tool_and_starts_home_pointing_down(model, tool):
    t = _twin(model, tool)
    try:
        t.reset(np.random.default_rng(0))
        r = t.robots[0]
        assert r.name == f"{model}-0" and r.tool.kind == tool
        np.testing.assert_allclose(r.ee_xyz(), r.home_ee, atol=2e-3)
        m = t.world.p.getMatrixFromQuaternion(r.ee_orientation())
        assert m[8] < -0.999  # the tool's z axis points at the floor
        assert r.finger_width() == pytest.approx(0.08 if tool == "parallel_gripper" else 0.0, abs=1e-3)
        q = r.joint_state()[0]
        assert all(lo <= v <= hi for v, lo, hi in zip(q, MODELS[model].lower, MODELS[model].upper, strict=True))
        # the wrist sensor's link turns with the tool centre point (wrist_wrench relies on it)
        np.testing.assert_allclose(t.world.p.getLinkState(r.id, r.wrist_joint)[5], r.ee_orientation(), atol=1e-12)
        assert r.wrist_wrench() == (0.0,) * 6  # the sensor's first reading, before any step
        t.step()
        p = t.world.p
        tool_mass = sum(p.getDynamicsInfo(r.id, j)[0] for j in range(r.wrist_joint, p.getNumJoints(r.id)))
        fx, fy, fz = r.wrist_wrench()[:3]
        # it carries the tool's weight, straight down
        assert fz == pytest.approx(9.81 * tool_mass, rel=0.02) and abs(fx) < 0.05 and abs(fy) < 0.05
    finally:
        t.close()


def _drive(t: Twin, target: np.ndarray) -> float:
    """Drive the arm from home towards ``target`` in 3 cm steps; the distance left, metres."""
    t.reset(np.random.default_rng(0))
    r = t.robots[0]
    for _ in range(150):
        ee = np.array(r.ee_xyz())
        r.move_ee_to(ee + np.clip(target - ee, -0.03, 0.03))
        t.step()
    return float(np.linalg.norm(np.array(r.ee_xyz()) - target))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_reach_model_matches_what_the_arm_can_do(model):
    """Points just inside the reach model are reached within a millimetre; 4 cm beyond, they are
    not; nor, for an arm whose elbow cannot fold all the way, are points too close to its shoulder."""
    spec = MODELS[model]
    t = _twin(model)
    try:
        base = tuple(t.robots[0].config.base.position)
        shoulder = base[2] + spec.shoulder_height
        for h, ang in ((-0.3, 0.0), (0.0, 1.2), (0.15, -1.2)):
            edge = 0.55
            while can_reach(model, base, (edge * math.cos(ang), edge * math.sin(ang), shoulder + h)):
                edge += 0.005
            for dist, reached in ((edge - 0.01, True), (edge + 0.04, False)):
                target = np.array([dist * math.cos(ang), dist * math.sin(ang), shoulder + h])
                err = _drive(t, target)
                assert (err < 1e-3) == reached, (model, h, ang, dist, err)
        if spec.min_reach > 0:  # at a tool height that puts the wrist centre at the shoulder's
            for wrist, reached in ((spec.min_reach + 0.01, True), (spec.min_reach - 0.04, False)):
                target = np.array([wrist, 0.0, shoulder - spec.wrist_drop])
                assert can_reach(model, base, tuple(target)) == reached
                err = _drive(t, target)
                assert (err < 1e-3) == reached, (model, wrist, err)
    finally:
        t.close()


def test_home_posture_from_the_layout_and_its_limits(tmp_path):
    home = (0.0, 0.3, 0.0, -1.9, 0.0, 1.0, 0.0)
    lay = load_layout("workbench")
    robot = lay.robots[0].model_copy(update={"model": "iiwa", "home": home})
    t = Twin(lay.model_copy(update={"robots": [robot]}))
    try:
        t.reset(np.random.default_rng(0))
        np.testing.assert_allclose(t.robots[0].joint_state()[0], home, atol=1e-9)
    finally:
        t.close()
    text = edited("workbench", 'model = "panda"', 'model = "iiwa"\nhome = [0.0, 2.5, 0.0, -1.9, 0.0, 1.0, 0.0]')
    assert_refused(tmp_path, text, r"robots\[0\]\.home\[1\]: 2\.5 rad is outside the KUKA LBR iiwa 14 R820's joint")


def test_swapping_the_arm_keeps_the_cell_and_checks_reach_again(tmp_path):
    lay = load_layout("machine_tending")
    swapped = with_robot(lay, "iiwa")
    assert [r.model for r in swapped.robots] == ["iiwa"]
    assert swapped.robots[0].base == lay.robots[0].base and swapped.machines == lay.machines
    with pytest.raises(LayoutError, match=r"(?s)robot='ur5'.*robots\[0\]\.model"):
        with_robot(lay, "ur5")
    # A slow machine 1 cm beyond the Panda's reach and within the iiwa's: a cell for the iiwa only.
    text = edited("machine_tending", 'model = "panda"', 'model = "iiwa"').replace(
        "position = [0.05, 0.78]", "position = [0.05, 0.94]"
    )
    path = tmp_path / "far.toml"
    path.write_text(text)
    far = load_layout(path)
    with pytest.raises(
        LayoutError, match=r"(?s)robot='panda'.*machines\[0\]\.position: .* out of reach of every robot"
    ):
        with_robot(far, "panda", str(path))
