"""Hostile suites, --set values, checkpoint folders and policy files: each refused with the file,
the field and the expectation (exit 2), never a traceback. Mutants come from fixed seeds."""

from __future__ import annotations

import json
import random
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from agents.cli import run as cli
from agents.common.checkpoint import CheckpointError
from agents.evaluation.runner import PolicyError, check_policy, policy_spec
from agents.evaluation.suite import SEEDS_DIR, SuiteError, load_suite
from tests.fuzz import REPLACEMENTS, structured_mutants, text_mutants

RICH_SUITE = """
name = "rich"
description = "every section a suite may have"

[limits]
episode_seconds = 60
call_seconds = 1
memory_mb = 2048

[[tasks]]
env_id = "ConveyorPick-v0"
layout = "default"
seeds = [1, 2]

[[tasks.variants]]
name = "nominal"

[[tasks.variants]]
name = "fast"
env_kwargs = { belt_speed = 0.2, parts = 2 }
"""


def _tiny_suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1]\n')
    return path


# -- suites -------------------------------------------------------------------------------------


def test_mutated_suites_never_give_a_traceback(tmp_path):
    cases = []
    for name, text in (("smoke", (SEEDS_DIR / "smoke-v1.toml").read_text()), ("rich", RICH_SUITE)):
        data = tomllib.loads(text)
        cases += [(f"{name}: {label}", body.encode()) for label, body in structured_mutants(data, seed=3, per_leaf=5)]
        cases += [(f"{name}: {label}", raw) for label, raw in text_mutants(text, seed=4, count=45)]
    path = tmp_path / "mutant.toml"
    refused = built = 0
    spec = policy_spec("random")
    for label, raw in cases:
        path.write_bytes(raw)
        try:
            suite = load_suite(path)
            check_policy(spec, suite)  # what twin eval does before the first episode: builds every env
        except SuiteError as exc:
            assert "mutant.toml" in str(exc), (label, exc)
            refused += 1
        else:
            built += 1
    assert len(cases) > 250 and refused > 0.7 * len(cases), (len(cases), refused)
    print(f"suites: {len(cases)} mutated suites, {refused} refused, {built} accepted, 0 tracebacks")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [18446744073709551616]\n', "at most 2**32 - 1"),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [4294967296]\n', "at most 2**32 - 1"),
        (
            'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [1]\n'
            '[[tasks.variants]]\nname = "evil"\nenv_kwargs = { evil = 1 }\n',
            "tasks[0].variants[0] (evil): gym.make('ConveyorPick-v0') with env_kwargs {'evil': 1} fails",
        ),
        (
            'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [1]\n'
            '[[tasks.variants]]\nname = "v"\nenv_kwargs = { parts = 1000 }\n',
            "parts must be a whole number from 1 to 50",
        ),
        ('name = "x"\n[limits]\ncall_seconds = -1\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1]\n', "limits"),
        (
            'name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = ' + str(list(range(100_001))) + "\n",
            "at most 100000 items",
        ),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [[[[[[1]]]]]]\n', "tasks[0].seeds[0]"),
        ("name = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ('name = "\xff"', "not UTF-8"),
    ],
    ids=[
        "seed-2**64",
        "seed-2**32",
        "env-kwargs-evil",
        "env-kwargs-range",
        "limits",
        "million-seeds",
        "nesting",
        "deep-toml",
        "latin-1",
    ],
)
def test_bad_suites_are_refused_before_any_episode(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    code = cli(["eval", "--policy", "random", "--suite", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.toml" in err and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # nothing written


# -- configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["ppo", "sac", "bc"])
def test_every_setting_refuses_values_out_of_its_type_or_bounds(tmp_path, capsys, algo):
    from dataclasses import fields

    from agents.common.config import CONFIGS

    values = [
        "",
        "x",
        "nan",
        "inf",
        "-inf",
        "-1",
        "0",
        "1e308",
        "1000000000",
        "18446744073709551616",
        "{}",
        "[1]",
        '{"a":',
        "true",
        "1.5",
        "\x00",
    ]
    cases = refused = 0
    for f in fields(CONFIGS[algo]):
        if f.name in ("env_id", "demos", "device", "backend", "collect"):
            continue  # strings checked elsewhere (the env id, the demos file) or below
        for v in values:
            cases += 1
            code = cli(
                [
                    "train",
                    "--env",
                    "FactoryReach-v0",
                    "--algo",
                    algo,
                    "--out",
                    str(tmp_path / "r"),
                    "--set",
                    f"{f.name}={v}",
                    "--show-config",
                ]
            )
            assert code in (0, 2)
            refused += code == 2
            err = capsys.readouterr().err
            if code == 2:
                assert f.name in err and "Traceback" not in err, err
    assert refused > 0.6 * cases
    print(f"configs ({algo}): {cases} --set values, {refused} refused, 0 tracebacks")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("net_width=1000000000", "net_width must be in [1, 8,192]"),
        ("lr=nan", "lr must be a finite number"),
        ("seed=-1", "seed must be in [0,"),
        ("buffer_size=0", "buffer_size must be in [1,"),
        ("batch_size=0", "batch_size must be in [1,"),
        ("learning_starts=-5", "learning_starts must be in [0,"),
        ("gamma=1.5", "gamma must be in (0, 1]"),
        ("batch_size=512", "batch_size (512) must not exceed buffer_size (100)"),
    ],
)
def test_bad_settings_name_the_setting_and_its_bounds(tmp_path, capsys, setting, expected):
    extra = ["--set", "buffer_size=100"] if setting.startswith("batch_size=512") else []
    args = ["train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", str(tmp_path / "r"), "--set", setting]
    assert cli([*args, *extra]) == 2
    assert expected in capsys.readouterr().err


def test_env_kwargs_the_env_refuses_stop_train_before_any_worker(tmp_path, capsys):
    args = ["train", "--env", "ConveyorPick-v0", "--algo", "ppo", "--out", str(tmp_path / "r")]
    assert cli([*args, "--set", 'env_kwargs={"evil": 1}']) == 2
    assert "ConveyorPick has no setting 'evil'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# -- checkpoints ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SAC run (it has a replay file too) and its checkpoint folder."""
    pytest.importorskip("torch")
    from agents.common.config import make_config
    from agents.train import train

    root = tmp_path_factory.mktemp("ckpt")
    cfg = make_config(
        "sac",
        "FactoryReach-v0",
        {
            "total_steps": "64",
            "learning_starts": "32",
            "eval_episodes": "0",
            "net_width": "16",
            "n_envs": "1",
            "workers": "1",
        },
    )
    train(cfg, root / "run", quiet=True)
    folder = next((root / "run" / "checkpoints").glob("step-*"))
    return root / "run", folder


def _sidecar(folder: Path) -> dict:
    return json.loads((folder / "checkpoint.json").read_text())


def _write_sidecar(folder: Path, doc) -> None:
    (folder / "checkpoint.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)


def _damages(folder: Path):
    """(label, damage(folder)) for the ways a checkpoint folder arrives broken."""
    from safetensors.torch import save_file

    def flip(name, at):
        def f(d):
            b = bytearray((d / name).read_bytes())
            b[at % len(b)] ^= 0xFF
            (d / name).write_bytes(bytes(b))

        return f

    def edit(fn):
        def f(d):
            doc = _sidecar(d)
            fn(doc)
            _write_sidecar(d, doc)

        return f

    def rehash(d, name):
        import hashlib

        doc = _sidecar(d)
        doc["files"][name] = hashlib.sha256((d / name).read_bytes()).hexdigest()
        _write_sidecar(d, doc)

    def replay_misshaped(d):
        import torch

        save_file({"replay.obs": torch.zeros(1, 3, 2)}, str(d / "replay.safetensors"))
        rehash(d, "replay.safetensors")

    def huge_header(d):
        (d / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
        rehash(d, "model.safetensors")

    def wrong_weights(d):
        import torch

        save_file({"model.nothing": torch.zeros(2)}, str(d / "model.safetensors"))
        rehash(d, "model.safetensors")

    def set_(path, value):
        def fn(doc):
            target = doc
            for p in path[:-1]:
                target = target[p]
            target[path[-1]] = value

        return edit(fn)

    return [
        ("flipped byte in the weights", flip("model.safetensors", 1000)),
        ("flipped byte in the header", flip("model.safetensors", 12)),
        ("corrupt JSON", lambda d: _write_sidecar(d, "{not json")),
        ("JSON of another type", lambda d: _write_sidecar(d, "[1, 2]")),
        ("deeply nested JSON", lambda d: _write_sidecar(d, "[" * 100_000 + "]" * 100_000)),
        ("invalid UTF-8 JSON", lambda d: (d / "checkpoint.json").write_bytes(b'{"format": "\xff"}')),
        ("wrong format", set_(("format",), "something-else/9")),
        ("sidecar missing", lambda d: (d / "checkpoint.json").unlink()),
        ("weights missing", lambda d: (d / "model.safetensors").unlink()),
        ("replay missing", lambda d: (d / "replay.safetensors").unlink()),
        ("oversized safetensors header", huge_header),
        ("weights of another network", wrong_weights),
        ("mis-shaped replay tensor", replay_misshaped),
        ("non-numeric step", set_(("step",), "many")),
        ("negative step", set_(("step",), -5)),
        ("non-numeric width", set_(("config", "net_width"), "wide")),
        ("huge width", set_(("config", "net_width"), 10**9)),
        ("unknown setting", set_(("config", "colour"), "red")),
        ("unknown algorithm", set_(("config", "algo"), "dqn")),
        ("malformed files entry", set_(("files",), {"model.safetensors": 42})),
        ("files not a table", set_(("files",), ["model.safetensors"])),
        ("huge observation shape", set_(("obs_space",), {"type": "Box", "shape": [10**9], "dtype": "float32"})),
        ("wrong observation shape", set_(("obs_space",), {"type": "Box", "shape": [7], "dtype": "float32"})),
        ("action shape of text", set_(("action_space", "shape"), ["three"])),
        ("action bounds missing", set_(("action_space",), {"type": "Box", "shape": [3]})),
        ("huge sidecar", lambda d: _write_sidecar(d, '{"pad": "' + "x" * (17 * 2**20) + '"}')),
        ("optimiser state of text", set_(("optim",), {"adam": "x"})),
        ("rng state of text", set_(("rng",), {"numpy": "x"})),
    ]


def test_damaged_checkpoint_folders_are_refused_by_eval_export_and_resume(tmp_path, capsys, trained):
    run, folder = trained
    suite = tmp_path / "goal.toml"
    suite.write_text(
        'name = "goal"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1]\n[[tasks.variants]]\nname = "goal"\n'
        'env_kwargs = { obs_mode = "goal", reward_type = "sparse" }\n'
    )
    damages = _damages(folder)
    for i, (label, damage) in enumerate(damages):
        case = tmp_path / f"case{i}"
        shutil.copytree(run, case / "run")
        ck = case / "run" / "checkpoints" / folder.name
        damage(ck)
        # the policy needs the sidecar and the weights only; the replay and RNG state matter to resume
        policy_ok = label in ("replay missing", "mis-shaped replay tensor", "rng state of text")
        code = cli(["eval", "--policy", str(ck), "--suite", str(suite), "--out", str(case / "eval"), "--videos", "0"])
        err = capsys.readouterr().err
        assert code == (0 if policy_ok else 2), (label, code, err)
        assert "Traceback" not in err
        if code == 2:
            assert "checkpoint" in err or str(ck) in err, (label, err)
        code = cli(["export", str(ck), "--onnx", str(case / "p.onnx")])
        err = capsys.readouterr().err
        assert code == (0 if policy_ok else 2), (label, code, err)
        code = cli(
            [
                "train",
                "--env",
                "FactoryReach-v0",
                "--algo",
                "sac",
                "--out",
                str(case / "run"),
                "--resume",
                "--steps",
                "96",
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, (label, code, err)
        assert "Traceback" not in err
    print(f"checkpoints: {len(damages)} damaged folders x eval, export, resume: 0 tracebacks")


def test_mutated_sidecars_are_refused_clearly_or_load_as_a_working_policy(tmp_path, trained):
    from agents.train import _flatdim, load_policy

    _, folder = trained
    doc = _sidecar(folder)
    rng = random.Random(5)
    leaves = []

    def walk(d, path=()):
        if isinstance(d, dict):
            for k, v in d.items():
                walk(v, (*path, k))
        elif not (isinstance(d, list) and len(d) > 16):
            leaves.append(path)

    walk(doc)
    cases = loaded = 0
    ck = tmp_path / "ck"
    shutil.copytree(folder, ck)
    for path in leaves:
        for value in rng.sample(REPLACEMENTS, 3):
            mutant = json.loads(json.dumps(doc))
            target = mutant
            for p in path[:-1]:
                target = target[p]
            target[path[-1]] = value
            (ck / "checkpoint.json").write_text(json.dumps(mutant))
            cases += 1
            where = ".".join(str(p) for p in path)
            try:
                policy, loaded_doc = load_policy(ck)
            except CheckpointError as exc:
                # refused clearly: the file and the field (or the tensor file it names) in one message
                msg = str(exc)
                assert str(ck) in msg, (where, value, msg)
                assert any(str(p) in msg for p in path if isinstance(p, str)) or "safetensors" in msg, (where, msg)
                assert "Traceback" not in msg and len(msg) < 2000
                continue
            # or loaded as a checkpoint that works: the policy acts on the declared observation
            loaded += 1
            obs_dim = _flatdim(loaded_doc["obs_space"])
            act_shape = list(loaded_doc["action_space"]["shape"])
            import torch

            with torch.no_grad():
                action = policy(torch.zeros(1, obs_dim)).numpy()
            assert list(action.shape) == [1, *act_shape] and np.isfinite(action).all(), (where, value)
    assert cases > 200 and cases - loaded > 100
    print(f"checkpoints: {cases} mutated sidecars, {cases - loaded} refused, {loaded} loaded, 0 tracebacks")


# -- policy files ---------------------------------------------------------------------------


def test_hostile_policy_files_are_refused(tmp_path):
    import os

    from tests.agents.test_eval import _onnx_policy

    suite = load_suite(_tiny_suite(tmp_path))
    good = _onnx_policy(tmp_path / "good.onnx", 12, 3).read_bytes()
    rng = random.Random(6)
    cases: list[tuple[str, Path]] = []
    for i in range(40):
        b = bytearray(good)
        k = rng.randrange(len(b))
        b[k] = rng.randrange(256)
        cases.append((f"byte {k} flipped", tmp_path / f"flip{i}.onnx"))
        cases[-1][1].write_bytes(bytes(b))
    for cut in (0, 1, 10, len(good) // 2, len(good) - 1):
        cases.append((f"truncated at {cut}", tmp_path / f"cut{cut}.onnx"))
        cases[-1][1].write_bytes(good[:cut])
    os.mkfifo(tmp_path / "fifo.onnx")
    cases += [("/dev/zero", Path("/dev/zero")), ("a FIFO", tmp_path / "fifo.onnx"), ("a folder", tmp_path)]
    refused = 0
    for label, path in cases:
        try:
            check_policy(policy_spec(str(path)), suite)
        except (PolicyError, SuiteError):
            refused += 1
        else:
            assert label.startswith("byte"), label  # a flipped weight byte may still be a valid policy
    assert refused > 0.5 * len(cases)
    print(f"policies: {len(cases)} hostile policy files, {refused} refused, 0 tracebacks")
