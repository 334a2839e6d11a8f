"""Reading layouts: bounded file reads, TOML, validation into ``CellLayout`` with errors that
name file and field, bundled-layout lookup and content hashes."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from pydantic import ValidationError

from twin.layout.base import MAX_LAYOUT_BYTES, MAX_URDF_BYTES, LayoutError
from twin.layout.schema import CellLayout
from twin.paths import ASSETS_DIR, LAYOUTS_DIR


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "(top level)"


def _brief(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text):,} chars)"


def _format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        loc = _loc(tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-"))))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the layout schema)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        value = e.get("input")
        shown = (
            "" if e["type"] in ("missing", "extra_forbidden") or isinstance(value, dict) else f" (got {_brief(value)})"
        )
        problems.append(f"{loc}: {msg}{shown}")
    return problems


def parse_layout(data: dict, source: str = "<layout>", base_dir: Path | None = None) -> CellLayout:
    """Validate a layout given as a dict; ``source`` names it in errors."""
    try:
        layout = CellLayout.model_validate(data)
    except ValidationError as err:
        raise LayoutError(source, _format_errors(err)) from None
    except RecursionError:
        raise LayoutError(source, ["nested too deeply"]) from None
    problems = []
    for i, fx in enumerate(layout.fixtures):
        path = resolve_asset(fx.urdf, base_dir)
        if path is None:
            problems.append(
                f"fixtures[{i}].urdf: file not found: {fx.urdf!r} (looked beside the layout and in {ASSETS_DIR})"
            )
            continue
        problem = check_urdf(path)
        if problem:
            problems.append(f"fixtures[{i}].urdf: {path}: {problem}")
    if problems:
        raise LayoutError(source, problems)
    return layout


def with_robot(layout: CellLayout, model: str, source: str = "<layout>") -> CellLayout:
    """The layout with every robot swapped for one of ``model`` (same base, tool and settings; the
    new model's own home posture), checked again: the new arm must reach what the cell needs."""
    data = layout.model_dump()
    for r in data["robots"]:
        r["model"], r["home"] = model, None
    try:
        return CellLayout.model_validate(data)
    except ValidationError as err:
        raise LayoutError(f"{source} with robot={model!r}", _format_errors(err)) from None


def with_variation(
    layout: CellLayout,
    faults: str | list[str] | None = "layout",
    randomize: bool | None = None,
    source: str = "<layout>",
) -> CellLayout:
    """The layout with faults and randomisation switched as an env's ``faults=`` and ``randomize=`` ask.

    Args:
        faults: ``"layout"`` keeps the layout's own ``[faults]``; ``"none"`` (or None) turns every
            family off; ``"all"`` turns on every family the cell has equipment for; a list of
            family names turns on those. A family the layout configures keeps its settings, one it
            does not gets the family's defaults.
        randomize: None keeps the layout's ``[randomization]``; False turns it off; True keeps the
            layout's where it has one, else applies ``STANDARD_RANDOMIZATION``.
    """
    from twin.layout.variation import FAMILY_MODELS, STANDARD_RANDOMIZATION, Randomization, applicable_families

    where = f"{source} with faults={faults!r}"
    data = layout.model_dump()
    if faults is None or faults == "none":
        data["faults"] = {"indicators": layout.faults.indicators}
    elif faults == "all" or isinstance(faults, list | tuple):
        if faults == "all":
            names = applicable_families(layout)
        else:
            unknown = [f for f in faults if f not in FAMILY_MODELS]
            if unknown or not all(isinstance(f, str) for f in faults):
                raise LayoutError(where, [f"faults: unknown fault families {unknown} (known: {list(FAMILY_MODELS)})"])
            names = list(dict.fromkeys(faults))
        data["faults"] = {"indicators": layout.faults.indicators} | {n: (data["faults"].get(n) or {}) for n in names}
    elif faults != "layout":
        raise LayoutError(
            where, ["faults: expected 'layout', 'none', 'all' or a list of fault families, got " + repr(faults)]
        )
    if randomize is False:
        data["randomization"] = {}
    elif randomize is True and layout.randomization == Randomization():
        data["randomization"] = STANDARD_RANDOMIZATION.model_dump()
        if not layout.conveyors:  # the standard ranges apply where the cell has the equipment
            data["randomization"].pop("belt_speed")
        if not layout.robots:
            data["randomization"].pop("base_position")
            data["randomization"].pop("base_yaw")
        if layout.wafer_robot is not None:
            data["randomization"].pop("action_noise")
    elif randomize not in (None, True):
        raise LayoutError(f"{source} with randomize={randomize!r}", ["randomize: expected true, false or none"])
    try:
        return CellLayout.model_validate(data)
    except ValidationError as err:
        raise LayoutError(where, _format_errors(err)) from None


def check_urdf(path: Path) -> str | None:
    """What is wrong with a fixture URDF (None when PyBullet loads it): size, XML, the ``<robot>``
    root, missing mesh files, and finally a load in a throwaway PyBullet client."""
    import xml.etree.ElementTree as ET

    try:
        size = path.stat().st_size
        if size > MAX_URDF_BYTES:
            return f"{size:,} bytes, over the {MAX_URDF_BYTES:,}-byte limit for a URDF"
        text = path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if b"<!ENTITY" in text:
        return "XML entity declarations are not accepted in a URDF"
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return f"not well-formed XML ({exc})"
    except RecursionError:
        return "XML nested too deeply"
    if root.tag != "robot":
        return f"the root element is <{root.tag}>, a URDF's is <robot>"
    if root.find("link") is None:
        return "has no <link>"
    for mesh in root.iter("mesh"):
        name = mesh.get("filename", "")
        if not name:
            return "a <mesh> has no filename"
        if name.startswith("package://"):
            return f"mesh {name!r}: package:// paths are not resolved; give a path relative to the URDF"
        mesh_path = Path(name) if Path(name).is_absolute() else path.parent / name
        if not mesh_path.is_file():
            return f"mesh {name!r} not found (looked at {mesh_path})"
    return _pybullet_load_problem(path)


def _pybullet_load_problem(path: Path) -> str | None:
    import os

    import pybullet as pb

    # PyBullet prints its own complaints on the C stdout; keep them off the user's terminal.
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            client = pb.connect(pb.DIRECT)
            try:
                pb.loadURDF(str(path), physicsClientId=client)
            except pb.error as exc:
                return f"PyBullet cannot load it ({exc})"
            finally:
                pb.disconnect(client)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return None


def read_bounded(path: Path, limit: int, error) -> bytes:
    """A file's bytes, refusing files that are missing, unreadable, not regular or over ``limit``
    bytes (``error(problem)`` builds the exception) before reading them."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error("file not found") from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise error("not a regular file")
    if st.st_size > limit:
        raise error(f"{st.st_size:,} bytes, over the {limit:,}-byte limit")
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}") from None
    if len(raw) > limit:
        raise error(f"over the {limit:,}-byte limit")
    return raw


def parse_toml(raw: bytes, error) -> dict:
    """TOML from UTF-8 bytes; every failure (encoding, syntax, nesting) becomes ``error(problem)``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise error("not valid TOML: nested too deeply") from None


def resolve_asset(path: str, base_dir: Path | None) -> Path | None:
    """Find an asset path relative to the layout's folder, then the assets folder."""
    candidates = (
        [Path(path)] if Path(path).is_absolute() else [*(([base_dir / path]) if base_dir else []), ASSETS_DIR / path]
    )
    for c in candidates:
        if c.is_file():
            return c
    return None


def find_bundled(name_or_path: str | Path, folder: Path, what: str) -> Path:
    """A TOML file by path, or by name among the bundled ones in ``folder`` (``what`` names the
    kind in the error: ``layout``, ``line``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    bundled = folder / f"{name_or_path}.toml"
    if bundled.exists():
        return bundled
    names = sorted(f.stem for f in folder.glob("*.toml"))
    raise FileNotFoundError(f"no {what} file or bundled {what} named {str(name_or_path)!r} (bundled: {names})")


def find_layout(name_or_path: str | Path) -> Path:
    """A layout file by path, or by name among the bundled layouts (``"default"``)."""
    return find_bundled(name_or_path, LAYOUTS_DIR, "layout")


def load_layout(name_or_path: str | Path) -> CellLayout:
    """Read and validate a layout TOML file (a path, or the name of a bundled layout)."""
    path = find_layout(name_or_path)
    source = str(path)
    raw = read_bounded(path, MAX_LAYOUT_BYTES, lambda problem: LayoutError(source, [problem]))
    data = parse_toml(raw, lambda problem: LayoutError(source, [problem]))
    return parse_layout(data, source, path.parent)


def layout_hash(name_or_path: str | Path) -> str:
    """SHA-256 of a layout file's bytes (recorded with results)."""
    return hashlib.sha256(find_layout(name_or_path).read_bytes()).hexdigest()
