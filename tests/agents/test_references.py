"""The bundled expert references still hold: the expert evaluated now scores what they say."""

from __future__ import annotations

import pytest

from agents.evaluation.references import bundled, check, differences


def test_differences_name_every_change():
    ref = [{"task": "T", "variant": "nominal", "episodes": 2, "successes": 2, "errors": 0, "throughput_mean": 500.0}]
    same = [dict(ref[0])]
    assert differences(same, ref) == []
    moved = [{**ref[0], "successes": 1, "throughput_mean": 450.0}]
    assert differences(moved, ref) == [
        "T / nominal: successes 1 now, 2 in the reference",
        "T / nominal: throughput_mean 450.0 now, 500.0 in the reference",
    ]
    # a KPI mean a few percent off (another CPU's float path) with the same counts is the same
    assert differences([{**ref[0], "throughput_mean": 490.0}], ref) == []
    assert differences([], ref) == ["T / nominal: in the reference only"]


@pytest.mark.slow
def test_the_expert_still_scores_its_bundled_reference_on_the_smoke_suite(tmp_path):
    assert "smoke-v2" in bundled()
    diffs = check("smoke-v2", workers=2, out=tmp_path / "eval")
    assert diffs == [], (
        "the expert no longer scores seeds/reference/smoke-v2-expert.json: "
        + "; ".join(diffs[:10])
        + " (make them again: python -m agents.evaluation.references --workers 2)"
    )
