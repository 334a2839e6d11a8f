"""DAgger: the student learns from the expert's labels of the states it reaches itself."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from agents.cli import run as cli  # noqa: E402
from agents.collect.demos import DemosError, record  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.train import TrainError, train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()

QUICK = {"round_steps": "400", "n_envs": "2", "updates_per_round": "150", "batch_size": "128", "net_width": "64"}


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_dagger_learns_reach_from_the_states_it_reaches(tmp_path):
    cfg = make_config("dagger", "FactoryReach-v0", {**QUICK, "total_steps": "2400", "eval_episodes": "20"})
    result = train(cfg, tmp_path / "run", quiet=True)
    assert result["eval_success_rate"] >= 0.9
    rows = _metrics(tmp_path / "run")
    betas = [r["beta"] for r in rows if "beta" in r]
    assert betas == sorted(betas, reverse=True) and betas[-1] < 0.1  # the student takes over
    labelled = [r["labelled"] for r in rows if "labelled" in r]
    assert labelled[-1] >= 2000  # every state reached is labelled and kept


def test_a_resumed_run_keeps_its_labelled_states(tmp_path):
    cfg = make_config("dagger", "FactoryReach-v0", {**QUICK, "total_steps": "800", "eval_episodes": "0"})
    train(cfg, tmp_path / "run", quiet=True)
    before = _metrics(tmp_path / "run")[-1]["labelled"]
    cfg = make_config("dagger", "FactoryReach-v0", {**QUICK, "total_steps": "1600", "eval_episodes": "0"})
    train(cfg, tmp_path / "run", resume=True, quiet=True)
    after = _metrics(tmp_path / "run")[-1]["labelled"]
    assert before >= 790 and after >= before + 790


@pytest.mark.parametrize("learner_threads", ["0", "1"])
def test_the_fit_takes_every_core_unless_told_otherwise(tmp_path, monkeypatch, learner_threads):
    """The env workers wait through each fit, so its updates run on every core the run may use
    (here one more than the machine has, as it is made to say) and acting goes back to the cores
    they leave free; ``learner_threads`` given is kept for both."""
    import agents.dagger
    from agents.common.runtime import usable_cores

    cores = usable_cores() + 1  # more than acting can be given: the two are told apart
    fit_threads = cores if learner_threads == "0" else 1

    seen: list[int] = []
    step = torch.optim.AdamW.step

    def counting_step(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(agents.dagger, "usable_cores", lambda: cores)
    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    before = torch.get_num_threads()
    try:
        sets = {**QUICK, "total_steps": "800", "eval_episodes": "0", "learner_threads": learner_threads}
        train(make_config("dagger", "FactoryReach-v0", sets), tmp_path / "run", quiet=True)
        after_run = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 2 * 150 and set(seen) == {fit_threads}
    assert after_run < cores and (learner_threads == "0" or after_run == 1)  # acting is back on its share


def test_dagger_is_refused_where_no_expert_can_label(tmp_path, capsys):
    cfg = make_config("dagger", "ToyPoint-v0", {"total_steps": "100"})
    with pytest.raises(TrainError, match="ToyPoint-v0 has none"):
        train(cfg, tmp_path / "run", quiet=True)
    assert cli(["train", "--env", "panda_gym:PandaReach-v3", "--algo", "dagger", "--out", str(tmp_path / "p")]) == 2
    assert "panda_gym:PandaReach-v3 has none" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="beta_decay must be in"):
        make_config("dagger", "FactoryReach-v0", {"beta_decay": "2"})


def test_demos_of_another_observation_layout_are_refused_naming_it(tmp_path):
    from twin.paths import LAYOUTS_DIR

    flagged = tmp_path / "flagged.toml"  # the cell with fault indicators: the observation grows flags
    flagged.write_text((LAYOUTS_DIR / "default.toml").read_text() + "\n[faults]\nindicators = true\n")
    demos = tmp_path / "d.safetensors"
    record("ConveyorPick-v1", 1, demos, env_kwargs={"layout": str(flagged), "parts": 1})
    cfg = make_config("dagger", "ConveyorPick-v1", {"demos": str(demos), "total_steps": "100"})
    with pytest.raises(DemosError, match="another observation layout: number 26 is 'fault_conveyor_jam' in the demos"):
        train(cfg, tmp_path / "run", quiet=True)
    cfg = make_config("bc", "BinSort-v1", {"demos": str(demos), "total_steps": "10"})
    with pytest.raises(DemosError, match="recorded on 'ConveyorPick-v1', training is on 'BinSort-v1'"):
        train(cfg, tmp_path / "bc", quiet=True)
