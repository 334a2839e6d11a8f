"""Seed suites, twin eval (local and Ray), untrusted policies, reports and comparisons."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import envs
from agents.cli import run as cli
from agents.evaluation.report import aggregate, wilson
from agents.evaluation.runner import PolicyError, check_policy, policy_spec, run_suite
from agents.evaluation.suite import SuiteError, load_suite

TINY = """
name = "tiny"
[[tasks]]
env_id = "FactoryReach-v0"
seeds = [1, 2, 3, 4]
"""


def _suite(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_suites_are_valid_and_hashed():
    smoke, standard = load_suite("smoke-v1"), load_suite("standard-v1")
    assert len(smoke.episodes()) == 4 and len(standard.episodes()) == 200
    assert len(smoke.hash) == 64 and smoke.hash != standard.hash
    assert set(smoke.layout_hashes()) == {"default.toml", "workbench.toml"}


# v1 stays byte-identical, so scorecards made with it stay comparable
V1_SHA256 = {
    "smoke-v1": "d6c22840734fe6b91625a82e50583733f3e952cf6af0cca50f0815c167e3b64e",
    "standard-v1": "261fee2578d1574d1970186504e6c2a46a42867f54daad43fa56f58fc674484e",
}


@pytest.mark.parametrize("name", sorted(V1_SHA256))
def test_v1_suites_are_frozen(name):
    assert load_suite(name).hash == V1_SHA256[name]


V0_IDS = [e for e in envs.ENV_IDS if e.endswith("-v0")]


@pytest.mark.parametrize(("version", "ids"), [("v2", V0_IDS), ("v3", list(envs.LATEST_IDS))])
def test_suites_cover_every_task_with_v1_seeds(version, ids):
    smoke, standard = load_suite(f"smoke-{version}"), load_suite(f"standard-{version}")
    assert [t.env_id for t in standard.suite.tasks] == ids == [t.env_id for t in smoke.suite.tasks]
    assert all(list(t.seeds) == list(range(1000, 1100)) for t in standard.suite.tasks)
    assert all(list(t.seeds) == [1000, 1001] for t in smoke.suite.tasks)
    varied = [("nominal", {}), ("randomized", {"randomize": True}), ("faults", {"faults": "all"})]
    for t in (*standard.suite.tasks, *smoke.suite.tasks):  # every task varied, and with each arm it runs with
        arms = [("iiwa", {"robot": "iiwa"})] if "iiwa" in envs.ARMS[t.env_id] else []
        assert [(v.name, v.env_kwargs) for v in t.variants] == [*varied, *arms]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1]\ncolour = 3\n',
            "tasks[0].colour: unknown key",
        ),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1, 1]\n', "seeds must be unique"),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [-1]\n', "seeds must be >= 0"),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = []\n', "tasks[0].seeds"),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryRaech-v0"\nseeds = [1]\n', "did you mean FactoryReach-v0"),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nlayout = "nope"\nseeds = [1]\n', "tasks[0].layout"),
        ('name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = "1"\n', "tasks[0].seeds"),
        ("name = [", "not valid TOML"),
        (
            'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [1]\n[[tasks.variants]]\nname = "f"\n'
            'env_kwargs = { faults = ["conveyor_jam", "gremlins"] }\n',
            "tasks[0].variants[0].env_kwargs.faults: unknown fault families ['gremlins']",
        ),
        (
            'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [1]\n[[tasks.variants]]\nname = "f"\n'
            'env_kwargs = { faults = ["machine_breakdown"] }\n',
            "tasks[0].variants[0].env_kwargs.faults: machine_breakdown: this cell has nothing it acts on",
        ),
        (
            'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [1]\n[[tasks.variants]]\nname = "f"\n'
            'env_kwargs = { randomize = "lots" }\n',
            "tasks[0].variants[0].env_kwargs.randomize: expected true, false or none",
        ),
    ],
)
def test_bad_suites_name_the_file_and_field(tmp_path, capsys, text, expected):
    path = _suite(tmp_path, text, "bad.toml")
    with pytest.raises(SuiteError, match=r"bad\.toml") as info:
        load_suite(path)
    assert expected in str(info.value)
    assert cli(["eval", "--policy", "expert", "--suite", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and expected.split(":")[0] in err and "Traceback" not in err


def test_wilson_interval_matches_known_values():
    np.testing.assert_allclose(wilson(8, 10), (0.4901625, 0.9433178), atol=1e-6)
    np.testing.assert_allclose(wilson(0, 10), (0.0, 0.2775328), atol=1e-6)
    np.testing.assert_allclose(wilson(10, 10), (0.7224672, 1.0), atol=1e-6)
    np.testing.assert_allclose(wilson(50, 100), (0.4038315, 0.5961685), atol=1e-6)
    for n in range(1, 300):  # the interval holds the estimate exactly, also at 0 and 1
        assert wilson(n, n)[1] == 1.0 and wilson(0, n)[0] == 0.0


def test_rows_are_identical_across_worker_counts(tmp_path):
    text = TINY + '\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [7]\n'
    suite = load_suite(_suite(tmp_path, text))
    spec = policy_spec("random")
    one, _ = run_suite(spec, suite, workers=1)
    two, _ = run_suite(spec, suite, workers=2)
    assert one == two
    assert [(r["task"], r["seed"]) for r in one] == [("FactoryReach-v0", s) for s in (1, 2, 3, 4)] + [
        ("ConveyorPick-v0", 7)
    ]
    assert {"kpi_throughput", "kpi_energy", "failure"} <= set(one[-1])
    again, _ = run_suite(policy_spec("expert"), suite, workers=2)
    assert all(r["success"] and r["failure"] is None for r in again)


def test_eval_writes_results_report_and_compares(tmp_path, capsys):
    path = _suite(tmp_path)
    assert cli(["eval", "--policy", "expert", "--suite", str(path), "--out", str(tmp_path / "a"), "--videos", "1"]) == 0
    assert cli(["eval", "--policy", "random", "--suite", str(path), "--out", str(tmp_path / "b"), "--videos", "0"]) == 0
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    meta = doc["scorecard"]
    assert meta["suite_hash"] == load_suite(path).hash and meta["layout_hashes"] and "git_commit" in meta
    assert doc["aggregates"][0]["success_mean"] == 1.0 and len(doc["episodes"]) == 4
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "a" / "results.parquet")
    assert table.num_rows == 4 and "success" in table.column_names
    report = (tmp_path / "a" / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 2 and (
        "data:video/mp4;base64," in report or "data:image/gif" in report
    )
    capsys.readouterr()
    assert cli(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "FactoryReach" in out and (tmp_path / "cmp.png").stat().st_size > 1000
    # the expert's results as the reference beside the random policy's, in the report and the terminal
    assert cli(["report", str(tmp_path / "b"), "--reference", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "expert %" in out and " 100 │" in out  # the expert placed every part
    report = (tmp_path / "b" / "report.html").read_text()
    assert "<span class='ref'>expert 100.0% [" in report and "Expert reference" in report
    assert cli(["report", str(tmp_path / "b"), "--reference", str(tmp_path / "nothing")]) == 2
    assert "--reference" in (err := capsys.readouterr().err) and "no such reference file or folder" in err


def _onnx_policy(path, d_in, d_out, bias=0.0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((d_in, d_out), np.float32), "w")
    b = numpy_helper.from_array(np.full((d_out,), bias, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["action"])],
        "policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", d_out])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_onnx_shape_mismatch_is_refused_before_any_episode(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    suite = load_suite(_suite(tmp_path))
    bad_in = policy_spec(str(_onnx_policy(tmp_path / "in.onnx", 5, 3)))
    with pytest.raises(PolicyError, match=r"input 'obs' has shape \['batch', 5\].*needs \[batch, 12\]"):
        check_policy(bad_in, suite)
    bad_out = _onnx_policy(tmp_path / "out.onnx", 12, 4)
    assert (
        cli(["eval", "--policy", str(bad_out), "--suite", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "output 'action'" in capsys.readouterr().err
    good = policy_spec(str(_onnx_policy(tmp_path / "ok.onnx", 12, 3)))
    check_policy(good, suite)


def test_pickle_files_are_refused_without_being_loaded(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled!",))

    for name in ("policy.pt", "policy.pkl", "policy.pth"):
        (tmp_path / name).write_bytes(pickle.dumps(Boom()))
        with pytest.raises(PolicyError, match=r"pickle-based files .* refused.*ONNX"):
            policy_spec(str(tmp_path / name))
    with pytest.raises(PolicyError, match=r"no such file.*--policy takes"):
        policy_spec(str(tmp_path / "missing.onnx"))


def test_a_nan_policy_fails_its_episodes_and_the_evaluation_goes_on(tmp_path):
    pytest.importorskip("onnxruntime")
    suite = load_suite(_suite(tmp_path))
    spec = policy_spec(str(_onnx_policy(tmp_path / "nan.onnx", 12, 3, bias=float("nan"))))
    rows, _ = run_suite(spec, suite, workers=1)
    assert len(rows) == 4
    assert all(not r["success"] and "non-finite action" in r["failure"] for r in rows)
    agg = aggregate(rows)[0]
    assert agg["success_mean"] == 0.0 and agg["policy_failures"] == 4


def test_ray_backend_gives_the_local_rows(tmp_path):
    pytest.importorskip("ray")
    suite = load_suite(_suite(tmp_path))
    local, _ = run_suite(policy_spec("random"), suite, workers=1)
    remote, _ = run_suite(policy_spec("random"), suite, workers=2, backend="ray")
    assert remote == local


def test_a_ray_task_that_fails_fails_its_episodes_with_the_reason():
    pytest.importorskip("ray")
    from agents.evaluation.runner import collect_ray

    jobs = [("FactoryReach-v0", "nominal", 3, {"robot": "ur5"}, False)]  # gym.make raises inside the task
    got = []
    collect_ray(policy_spec("random"), jobs, 1, got.extend)
    (res,) = got
    row = res["row"]
    assert row["error"] and not row["success"] and (row["task"], row["seed"]) == ("FactoryReach-v0", 3)
    assert row["failure"].startswith("episode raised LayoutError:") and "ur5" in row["failure"]


def test_a_checkpoint_folder_is_evaluated_and_checked_against_the_suite(tmp_path):
    pytest.importorskip("torch")
    from agents.common.config import make_config
    from agents.train import train

    cfg = make_config(
        "ppo", "FactoryReach-v0", {"total_steps": "128", "n_steps": "64", "eval_episodes": "0", "net_width": "16"}
    )
    train(cfg, tmp_path / "run", quiet=True)
    suite = load_suite(_suite(tmp_path))
    spec = policy_spec(str(tmp_path / "run"))
    assert spec.kind == "checkpoint"
    check_policy(spec, suite)
    rows, _ = run_suite(spec, suite, workers=2)
    assert len(rows) == 4 and all(r["failure"] is None or "policy" not in r["failure"] for r in rows)
    goal = make_config("sac", "FactoryReach-v0", {"total_steps": "64", "learning_starts": "32", "eval_episodes": "0"})
    train(goal, tmp_path / "goal", quiet=True)
    with pytest.raises(PolicyError, match="set env_kwargs in a suite variant"):
        check_policy(policy_spec(str(tmp_path / "goal")), suite)


def test_variants_are_run_and_aggregated_apart(tmp_path):
    text = """
name = "variants"
[[tasks]]
env_id = "FactoryReach-v0"
layout = "workbench"
seeds = [5, 6]
[[tasks.variants]]
name = "dense"
[[tasks.variants]]
name = "sparse"
env_kwargs = { reward_type = "sparse" }
"""
    suite = load_suite(_suite(tmp_path, text))
    rows, _ = run_suite(policy_spec("expert"), suite, workers=1)
    assert [(r["variant"], r["seed"]) for r in rows] == [("dense", 5), ("dense", 6), ("sparse", 5), ("sparse", 6)]
    aggs = {a["variant"]: a for a in aggregate(rows)}
    assert set(aggs) == {"dense", "sparse"} and all(a["episodes"] == 2 for a in aggs.values())
    assert aggs["sparse"]["return_mean"] != aggs["dense"]["return_mean"]  # the variant's env kwargs took effect


def test_part_of_a_suite_runs_under_the_suites_hash(tmp_path, capsys):
    out = tmp_path / "reach"
    assert (
        cli(["eval", "--policy", "expert", "--suite", "smoke-v2", "--task", "FactoryReach-v0", "--out", str(out)]) == 0
    )
    doc = json.loads((out / "results.json").read_text())
    assert doc["scorecard"]["tasks_run"] == ["FactoryReach-v0"]
    assert doc["scorecard"]["suite_hash"] == load_suite("smoke-v2").hash
    assert {(r["task"], r["variant"]) for r in doc["episodes"]} == {
        ("FactoryReach-v0", v) for v in ("nominal", "randomized", "faults")
    }
    assert "x nominal" in capsys.readouterr().out
    assert cli(["eval", "--policy", "expert", "--suite", "smoke-v2", "--task", "Nope-v0", "--out", str(out)]) == 2
    assert "--task: Nope-v0 not in this suite" in capsys.readouterr().err


def test_some_variants_of_a_suite(tmp_path, capsys):
    out = tmp_path / "reach"
    argv = ["eval", "--policy", "expert", "--suite", "smoke-v3", "--task", "FactoryReach-v0", "--out", str(out)]
    assert cli([*argv, "--variant", "nominal", "--variant", "faults"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["scorecard"]["variants_run"] == ["nominal", "faults"]
    assert [(r["variant"], r["seed"]) for r in doc["episodes"]] == [
        ("nominal", 1000),
        ("nominal", 1001),
        ("faults", 1000),
        ("faults", 1001),
    ]
    capsys.readouterr()
    assert cli([*argv, "--variant", "iiwa", "--overwrite"]) == 2  # FactoryReach runs with the panda only
    assert "--variant: iiwa not in these tasks (variants: nominal, randomized, faults)" in capsys.readouterr().err
    assert cli([*argv, "--variant", "randomized", "--resume"]) == 2  # another part: not a resume of this one
    assert json.loads((out / "results.json").read_text()) == doc


@pytest.mark.parametrize("name", ["smoke-v2", "standard-v2", "smoke-v3"])
def test_the_bundled_expert_reference_matches_its_suite(name):
    from agents.evaluation.scorecard import REFERENCE_DIR, load_reference

    suite = load_suite(name)
    ref = load_reference({"suite": name, "suite_hash": suite.hash})
    # a suite edited without evaluating the expert on it again would lose its reference silently
    assert ref is not None, f"regenerate {REFERENCE_DIR / (name + '-expert.json')} for the edited suite"
    have = {(a["task"], a["variant"]) for a in ref["aggregates"]}
    assert have == {(t, v) for t, v, _ in suite.episodes()}
    assert all(
        a["episodes"] == len(next(t for t in suite.suite.tasks if t.env_id == a["task"]).seeds)
        for a in ref["aggregates"]
    )


def test_the_fault_family_suite_takes_the_faults_variant_apart():
    from twin.layout import applicable_families, find_layout, load_layout

    suite = load_suite("faults-v1")
    assert [t.env_id for t in suite.suite.tasks] == V0_IDS
    for t in suite.suite.tasks:
        fams = applicable_families(load_layout(find_layout(t.layout)))
        assert [(v.name, v.env_kwargs) for v in t.variants] == [(f, {"faults": [f]}) for f in fams]


def test_eval_records_telemetry_from_its_workers_as_twin_record_does(tmp_path, capsys):
    """Each episode is recorded by the worker that runs it; each task and variant comes out as one
    telemetry folder holding what `twin record` of the same seeds and variant holds."""
    pytest.importorskip("pyarrow")
    from twin.telemetry import read_recording

    tel = tmp_path / "tel"
    args = ["eval", "--policy", "expert", "--suite", "smoke-v2", "--task", "ConveyorPick-v0", "--variant", "nominal"]
    args += ["--variant", "faults", "--out", str(tmp_path / "ev"), "--workers", "2", "--videos", "0"]
    assert cli([*args, "--telemetry", str(tel), "--telemetry-rate", "5"]) == 0
    assert "telemetry of 4 episodes in 2 folders" in capsys.readouterr().out
    assert not (tel / ".parts").exists()
    for variant, kwargs in (("nominal", []), ("faults", ["--faults", "all"])):
        folder = tel / "ConveyorPick-v0" / variant
        info = json.loads((folder / "telemetry.json").read_text())
        assert info["seeds"] == [1000, 1001] and info["variant"] == variant and info["missing_seeds"] == []
        assert [e["offset_s"] for e in info["episodes"]] == [0.0, info["episodes"][0]["duration_s"]]
        ref = tmp_path / f"record-{variant}"
        record = ["record", "ConveyorPick-v0", "--episodes", "2", "--seed", "1000", "--out", str(ref)]
        assert cli([*record, "--telemetry-rate", "5", *kwargs]) == 0
        (s1, e1), (s2, e2) = read_recording(folder), read_recording(ref)
        assert e1.drop(["timestamp"]).to_pylist() == e2.drop(["timestamp"]).to_pylist()
        assert s1.num_rows == s2.num_rows
        assert s1.column("value").to_pylist() == s2.column("value").to_pylist()
    # a folder that holds a recording is not written over; a task with no twin is refused
    assert cli([*args[:-6], "--out", str(tmp_path / "ev2"), "--telemetry", str(tel)]) == 2
    assert "already holds ConveyorPick-v0" in capsys.readouterr().err
    assert cli([*args, "--telemetry-rate", "5"]) == 2
    assert "--telemetry-rate needs --telemetry DIR" in capsys.readouterr().err
