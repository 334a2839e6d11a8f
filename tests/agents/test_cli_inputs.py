"""Every subcommand, given bad input as a new user would give it: a negative seed, an output path
that cannot be written, an input that does not exist. Each exits 2 with one line on stderr that
names the argument, and never a traceback. Run as the console script, so what is checked is what
a user sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BLOCKER = "blocker.txt"
"""A regular file; a path under it can be neither created nor written (even by root)."""

# (subcommand, arguments, the argument the error must name); {x} is a path under the blocker file,
# {nope} a path that does not exist.
CASES = [
    ("smoke", ["smoke", "--seed", "-5"], "--seed"),
    ("play", ["play", "ConveyorPick-v0", "--seed", "-5"], "--seed"),
    ("play", ["play", "FactoryReach-v0", "--video", "{x}/v.mp4"], "--video"),
    ("play", ["play", "NoSuchTask-v0"], "NoSuchTask-v0"),
    ("layout check", ["layout", "check", "{nope}/cell.toml"], "FILE"),
    ("bench", ["bench", "--env", "NoSuchTask-v0"], "NoSuchTask-v0"),
    ("demos", ["demos", "ConveyorPick-v0", "--seed", "-5", "--out", "d.safetensors"], "--seed"),
    ("demos", ["demos", "ConveyorPick-v0", "--episodes", "1", "--out", "{x}/d.safetensors"], "--out"),
    ("demos", ["demos", "NoSuchTask-v0", "--out", "d.safetensors"], "NoSuchTask-v0"),
    ("train", ["train", "--env", "FactoryReach-v0", "--algo", "sac", "--seed", "-5", "--out", "r"], "--seed"),
    ("train", ["train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", "{x}/run"], "--out"),
    ("train", ["train", "--env", "FactoryReach-v0", "--algo", "bc", "--demos", "{nope}/d.st", "--out", "r"], "--demos"),
    ("export", ["export", "{nope}/run", "--onnx", "p.onnx"], "RUN"),
    ("eval", ["eval", "--policy", "expert", "--suite", "smoke-v2", "--out", "{x}/ev"], "--out"),
    ("eval", ["eval", "--policy", "{nope}/p.onnx", "--suite", "smoke-v2", "--out", "ev"], "--policy"),
    ("eval", ["eval", "--policy", "expert", "--suite", "{nope}/suite.toml", "--out", "ev"], "suite.toml"),
    (
        "eval",
        ["eval", "--policy", "expert", "--suite", "smoke-v2", "--out", "ev", "--reference", "{nope}"],
        "--reference",
    ),
    ("report", ["report", "{nope}/ev"], "FOLDER"),
    ("record", ["record", "MachineTend-v1", "--out", "{x}/tel"], "--out"),
    ("record", ["record", "MachineTend-v1", "--out", "tel", "--layout", "{nope}/cell.toml"], "--layout"),
    ("record", ["record", "MachineTend-v1", "--out", "tel", "--seed", "-5"], "--seed"),
    ("play", ["play", "MachineTend-v1", "--telemetry", "{x}/tel"], "--telemetry"),
    ("replay", ["replay", "{nope}/log", "--out", "r"], "LOG"),
    ("fidelity", ["fidelity", "{nope}/plant", "{nope}/twin", "--out", "f"], "PLANT_LOG"),
    (
        "calibrate",
        ["calibrate", "{nope}/plant", "--layout", "default", "--fit", "conveyors.0.speed", "--out", "c"],
        "PLANT_LOG",
    ),
    ("compare", ["compare", "{nope}/a", "{nope}/b"], "A"),
    ("compare", ["compare", "{nope}/a", "{nope}/b", "--plot", "{x}/c.png"], "--plot"),
    ("serve", ["serve", "--port", "70000"], "--port"),
    ("serve", ["serve", "--db", "{x}/service.db", "--workers", "0"], "--db"),
    ("worker", ["worker", "--db", "nosuchdb://host/x", "--once"], "--db"),
    ("worker", ["worker", "--episode-workers", "0", "--once"], "--episode-workers"),
    ("admin", ["admin", "add-team", "bad name!"], "bad name!"),
    ("admin", ["admin", "add-suite", "{nope}/alliance.toml"], "alliance.toml"),
    ("line", ["line", "check", "{nope}/line.toml"], "line.toml"),
    ("line", ["line", "fit", "pick_tend_sort", "--seeds", "-3", "--out", "m.json"], "--seeds"),
    ("line", ["line", "fit", "pick_tend_sort", "--out", "{x}/m.json"], "--out"),
    ("line", ["line", "run", "pick_tend_sort", "--model", "{nope}/m.json"], "m.json"),
    ("play", ["play", "--line", "{nope}/line.toml"], "line.toml"),
    ("sweep", ["sweep", "pick_tend_sort", "--vary", "buffer.9.capacity=1", "--out", "s"], "buffer.9.capacity"),
    (
        "sweep",
        ["sweep", "pick_tend_sort", "--vary", "buffer.0.capacity=1", "--model", "{nope}/m.json", "--out", "s"],
        "m.json",
    ),
    ("sweep", ["sweep", "pick_tend_sort", "--vary", "buffer.0.capacity=1", "--model", "m", "--out", "{x}/s"], "--out"),
    ("serve-opcua", ["serve-opcua", "ConveyorPick-v1", "--port", "70000"], "--port"),
    ("serve-opcua", ["serve-opcua", "NoSuchTask-v0"], "NoSuchTask-v0"),
    (
        "submit",
        ["submit", "{nope}/p.onnx", "--server", "http://127.0.0.1:9", "--token", "t", "--suite", "s", "--task", "t"],
        "p.onnx",
    ),
]


def _ids(case):
    return f"{case[0]}:{' '.join(case[1][1:])[:40]}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_the_argument(case, tmp_path: Path):
    _, args, names = case
    (tmp_path / BLOCKER).write_text("not a folder")
    subs = {"x": str(tmp_path / BLOCKER), "nope": str(tmp_path / "does-not-exist")}
    argv = [a.format(**subs) for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", "from agents.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, lines
    assert names in lines[0] and "error" in lines[0]
    assert not (tmp_path / BLOCKER).is_dir()  # nothing was made of the user's file


def test_every_subcommand_is_covered():
    from agents.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    covered = {c[0].split()[0] for c in CASES}
    # envs takes no arguments at all: nothing to get wrong
    assert set(sub.choices) - {"envs"} <= covered


@pytest.mark.parametrize(
    ("argv", "hidden", "message"),
    [
        (["train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", "r"], "torch", "twin train needs the [train]"),
        (["demos", "FactoryReach-v0", "--out", "d.st"], "safetensors", "twin demos needs the [train]"),
        (["export", ".", "--onnx", "p.onnx"], "onnx", "twin export needs the [train]"),
        (["eval", "--policy", "random", "--suite", "smoke-v2", "--out", "e"], "pyarrow", "twin eval needs the [eval]"),
        (["report", "."], "matplotlib", "twin report needs the [eval]"),
        (["eval", "--policy", "expert", "--suite", "smoke-v2", "--out", "e", "--backend", "ray"], "ray", "[ray]"),
        (["serve"], "fastapi", "twin serve needs the [service]"),
        (["submit", "p.onnx", "--server", "u", "--token", "t", "--suite", "s", "--task", "t"], "httpx", "[service]"),
    ],
    ids=["train", "demos", "export", "eval", "report", "eval-ray", "serve", "submit"],
)
def test_a_missing_extra_is_named_in_one_line(argv, hidden, message, monkeypatch, tmp_path, capsys):
    import agents.extras
    from agents.cli import run

    real = agents.extras.installed
    monkeypatch.setattr(agents.extras, "installed", lambda m: m != hidden and real(m))
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and 'pip install "factory-twin[' in lines[0], lines


def test_an_optional_import_deep_in_a_command_is_named_too(monkeypatch, capsys):
    import agents.cli

    def needs_pyarrow(args):
        raise ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow")

    args = agents.cli.build_parser().parse_args(["envs"])
    args.fn = needs_pyarrow
    monkeypatch.setattr(agents.cli, "build_parser", lambda: _Fixed(args))
    assert agents.cli.run(["envs"]) == 2
    err = capsys.readouterr().err
    assert 'twin envs needs the [eval] extra (pyarrow not installed): pip install "factory-twin[eval]"' in err


class _Fixed:
    def __init__(self, args):
        self.args = args

    def parse_args(self, argv):
        return self.args
