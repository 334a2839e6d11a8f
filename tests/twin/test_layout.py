from __future__ import annotations

import json
import tomllib

import pytest
from pydantic import ValidationError

from twin.layout import CellLayout, LayoutError, load_layout, parse_layout
from twin.paths import LAYOUTS_DIR


def _default() -> dict:
    return tomllib.loads((LAYOUTS_DIR / "default.toml").read_text())


def _write(tmp_path, data: dict, name: str = "cell.toml"):
    import tomli_w

    path = tmp_path / name
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in LAYOUTS_DIR.glob("*.toml")))
def test_bundled_layouts_are_valid(name):
    layout = load_layout(name)
    assert layout.name == name
    assert layout.robots or layout.agvs or layout.wafer_robot  # arms, AGVs or a wafer robot


def _error(tmp_path, data) -> LayoutError:
    path = _write(tmp_path, data)
    with pytest.raises(LayoutError) as exc:
        load_layout(path)
    assert str(path) in str(exc.value)
    return exc.value


def test_unknown_key_is_refused_with_its_path(tmp_path):
    data = _default()
    data["conveyors"][0]["sped"] = 0.2
    err = _error(tmp_path, data)
    assert any(p.startswith("conveyors[0].sped: unknown key") for p in err.problems)


def test_wrong_type_names_field_and_value(tmp_path):
    data = _default()
    data["physics"]["substeps"] = "twelve"
    err = _error(tmp_path, data)
    assert any("physics.substeps" in p and "'twelve'" in p for p in err.problems)


def test_negative_size_is_refused(tmp_path):
    data = _default()
    data["parts"][0]["size"] = [0.04, -0.04, 0.04]
    err = _error(tmp_path, data)
    assert any(p.startswith("parts[0].size[1]") and "greater than or equal to 0.001" in p for p in err.problems)


def test_missing_asset_is_refused(tmp_path):
    data = _default()
    data["fixtures"] = [{"urdf": "no/such/fixture.urdf", "pose": {"position": [1.0, 1.0, 0.0]}}]
    err = _error(tmp_path, data)
    assert any("fixtures[0].urdf: file not found" in p for p in err.problems)


def test_robot_outside_the_floor_is_refused(tmp_path):
    data = _default()
    data["robots"][0]["base"]["position"] = [9.0, 0.0, 0.75]
    err = _error(tmp_path, data)
    assert any("robots[0].base.position" in p and "outside the floor" in p for p in err.problems)


def test_feeder_must_name_known_parts(tmp_path):
    data = _default()
    data["feeders"][0]["mix"] = {"cube": 1.0, "gear": 1.0}
    err = _error(tmp_path, data)
    assert any("unknown parts ['gear']" in p for p in err.problems)


def test_bad_toml_is_reported_with_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = 'x'\n[[robots]\n")
    with pytest.raises(LayoutError, match="not valid TOML"):
        load_layout(path)


def test_missing_file_names_the_bundled_layouts():
    with pytest.raises(FileNotFoundError, match="default"):
        load_layout("no-such-layout")


def test_layouts_are_frozen():
    layout = load_layout("default")
    with pytest.raises(ValidationError, match="frozen"):
        layout.name = "other"  # type: ignore[misc]


def test_json_schema_export_names_fields():
    schema = CellLayout.model_json_schema()
    text = json.dumps(schema)
    assert "conveyors" in schema["properties"] and "additionalProperties" in text


def test_parse_layout_from_dict():
    layout = parse_layout(_default(), "<dict>")
    assert layout.conveyors[0].speed == pytest.approx(0.1)
