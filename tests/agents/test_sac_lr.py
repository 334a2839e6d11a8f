"""SAC's learning rate that falls over training (``lr_final_scale``): the schedule over env steps
and wall-clock, what a run's optimisers use and log, and the settings refused."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from agents.common import checkpoint as ckpt  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.sac import lr_scale  # noqa: E402
from agents.train import train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()


def test_the_schedule_falls_linearly_to_its_final_share():
    assert lr_scale(0.1, 0, 1000, 0.0, 0.0) == 1.0
    assert lr_scale(0.1, 500, 1000, 0.0, 0.0) == pytest.approx(0.55)
    assert lr_scale(0.1, 1000, 1000, 0.0, 0.0) == pytest.approx(0.1)
    assert lr_scale(0.1, 2000, 1000, 0.0, 0.0) == pytest.approx(0.1)  # never below the final share


def test_the_wall_clock_budget_leads_when_it_is_further_along():
    # a quarter of the env steps, three-quarters of the seconds: the seconds set the rate
    assert lr_scale(0.2, 250, 1000, 90.0, 120.0) == pytest.approx(1 - 0.8 * 0.75)
    assert lr_scale(0.2, 750, 1000, 30.0, 120.0) == pytest.approx(1 - 0.8 * 0.75)
    assert lr_scale(0.2, 100, 1000, 500.0, 120.0) == pytest.approx(0.2)


def _run(tmp_path, **kw):
    settings = {"net_width": "32", "eval_episodes": "2", "total_steps": "600", "learning_starts": "100"}
    cfg = make_config("sac", "ToyPoint-v0", {**settings, "log_every": "100", **kw})
    train(cfg, tmp_path / "r", quiet=True)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "critic_loss" in r]


def test_a_run_s_optimisers_follow_the_schedule_and_log_it(tmp_path):
    rows = _run(tmp_path, lr="2e-3", lr_final_scale="0.25")
    assert len(rows) >= 4
    for r in rows:  # each logged rate is the one its step's updates used
        assert r["lr"] == pytest.approx(2e-3 * (1 - 0.75 * r["step"] / 600), rel=1e-5)
    assert rows[-1]["step"] == 600 and rows[-1]["lr"] == pytest.approx(5e-4)
    # the checkpoint saves every optimiser at the rate it reached
    sidecar = json.loads((ckpt.resolve_checkpoint(tmp_path / "r") / ckpt.SIDECAR).read_text())
    rates = [g["lr"] for opt in sidecar["optim"].values() for g in opt["param_groups"]]
    assert len(rates) == 3 and rates == pytest.approx([5e-4] * 3)


def test_a_constant_rate_logs_none(tmp_path):
    rows = _run(tmp_path)
    assert rows and all("lr" not in r for r in rows)


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1", "nan"])
def test_a_final_share_out_of_range_is_refused_naming_it(bad):
    with pytest.raises(ConfigError, match="lr_final_scale"):
        make_config("sac", "ToyPoint-v0", {"lr_final_scale": bad})
