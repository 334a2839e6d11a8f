"""Hostile layouts: every one is refused with file, field and expectation (exit 2), none reaches
the user as a traceback; the layouts that pass build a cell that steps."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from agents.cli import run as cli
from tests.fuzz import structured_mutants, text_mutants
from twin.layout import LayoutError, load_layout
from twin.paths import LAYOUTS_DIR


def _check(path, capsys) -> tuple[int, str]:
    code = cli(["layout", "check", str(path)])  # an exception here fails the test: no traceback allowed
    err = capsys.readouterr().err
    assert code in (0, 2), code
    if code == 2:
        assert str(path) in err and "invalid layout" in err, err
    return code, err


@pytest.mark.parametrize("name", ["default", "workbench"])
def test_mutated_layouts_never_give_a_traceback(tmp_path, capsys, name):
    text = (LAYOUTS_DIR / f"{name}.toml").read_text()
    data = tomllib.loads(text)
    cases = [(label, body.encode()) for label, body in structured_mutants(data, seed=1)]
    cases += list(text_mutants(text, seed=2))
    accepted, codes = [], []
    path = tmp_path / f"{name}-mutant.toml"
    for label, raw in cases:
        path.write_bytes(raw)
        code, _ = _check(path, capsys)
        codes.append(code)
        if code == 0:
            accepted.append(label)
    assert len(cases) > 200 and codes.count(2) > 0.7 * len(cases), (len(cases), codes.count(2))
    print(f"{name}: {len(cases)} mutated layouts, {codes.count(2)} refused, {len(accepted)} accepted, 0 tracebacks")
    # a few accepted mutants (e.g. a name, a colour) must still build a cell that steps
    from twin.cell import Twin

    for label, raw in cases:
        if label in accepted[:: max(1, len(accepted) // 5)]:
            path.write_bytes(raw)
            twin = Twin(load_layout(path))
            try:
                twin.reset(np.random.default_rng(0))
                twin.step()
            finally:
                twin.close()


def _write(tmp_path, text: str, name: str = "cell.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = (LAYOUTS_DIR / "default.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("length = 1.6", "length = 1e9", "conveyors[0].length: Input should be less than or equal to 100"),
        ("size = [0.3, 0.3, 0.12]", "size = [1e9, 1e9, 0.12]", "bins[0].size[0]: Input should be less than"),
        ("solver_iterations = 50", "solver_iterations = 50\ngravity = [0, 0, -1e300]", "physics.gravity[2]"),
        ("cube = 0.6, cylinder = 0.4", "cube = 1e308, cylinder = 1e308", "feeders[0].mix.cube: Input should be less"),
        ("length = 1.6", "length = 7.0", "conveyors[0]: its footprint reaches"),
        ("mass = 0.25", "mass = inf", "parts[0].mass: Input should be a finite number"),
    ],
)
def test_absurd_values_are_refused_with_the_field_and_bound(tmp_path, capsys, old, new, expected):
    path = _write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(LayoutError, match=r"cell\.toml") as info:
        load_layout(path)
    assert expected in str(info.value)
    code, err = _check(path, capsys)
    assert code == 2 and expected in err


def _with_fixture(tmp_path, urdf_ref: str):
    fixture = f'\n[[fixtures]]\nurdf = "{urdf_ref}"\npose = {{ position = [1.0, 1.0, 0.0] }}\n'
    return _write(tmp_path, BASE + fixture)


URDF = """<?xml version="1.0"?>
<robot name="jig"><link name="base">
  <visual><geometry>{geometry}</geometry></visual>
  <collision><geometry><box size="0.1 0.1 0.1"/></geometry></collision>
  <inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
</link></robot>
"""


@pytest.mark.parametrize(
    ("urdf", "expected"),
    [
        ("/etc/passwd", "not well-formed XML"),
        (URDF.format(geometry='<mesh filename="meshes/jig.obj"/>'), "mesh 'meshes/jig.obj' not found"),
        (URDF.format(geometry='<box size="0.1 0.1 0.1"/>')[:-20], "not well-formed XML"),
        ("<?xml version='1.0'?><sdf version='1.6'/>", "the root element is <sdf>"),
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><robot name="r">&b;</robot>',
            "entity declarations are not accepted",
        ),
        (
            '<robot name="r"><link name="a"/><joint name="j" type="fixed"><parent link="a"/>'
            '<child link="nowhere"/></joint></robot>',
            "PyBullet cannot load it",
        ),
    ],
    ids=["etc-passwd", "missing-mesh", "malformed-xml", "not-a-robot", "xml-entities", "dangling-joint"],
)
def test_fixture_urdfs_are_checked_before_any_episode(tmp_path, capsys, urdf, expected):
    if urdf.startswith("/"):
        ref = urdf
    else:
        (tmp_path / "jig.urdf").write_text(urdf)
        ref = "jig.urdf"
    path = _with_fixture(tmp_path, ref)
    code, err = _check(path, capsys)
    assert code == 2 and "fixtures[0].urdf" in err and expected in err, err


def test_a_good_fixture_urdf_is_accepted(tmp_path, capsys):
    (tmp_path / "jig.urdf").write_text(URDF.format(geometry='<box size="0.1 0.1 0.1"/>'))
    assert _check(_with_fixture(tmp_path, "jig.urdf"), capsys)[0] == 0


def test_files_too_large_or_not_files_are_refused_before_reading(tmp_path, capsys):
    big = _write(tmp_path, BASE + "#" * (2**20) + "\n", "big.toml")
    code, err = _check(big, capsys)
    assert code == 2 and "over the 1,048,576-byte limit" in err
    tables = "".join("[[tables]]\nposition = [0, 0]\nsize = [0.1, 0.1, 0.1]\n" for _ in range(65))
    many = _write(tmp_path, BASE + tables, "many.toml")
    code, err = _check(many, capsys)
    assert code == 2 and "tables: List should have at most 64 items" in err
    assert cli(["layout", "check", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err
