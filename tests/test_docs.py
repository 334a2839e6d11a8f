"""The reference pages in docs/reference/ are what the code generates now, and every command's
needs are declared."""

from __future__ import annotations

import pytest

from agents.tools.docs import PAGES, REFERENCE, stale


def test_the_generated_reference_pages_are_up_to_date():
    assert set(p.name for p in REFERENCE.glob("*.md")) == set(PAGES)
    assert stale() == [], "regenerate them: python -m agents.tools.docs"


def test_a_changed_page_is_reported_stale(tmp_path):
    for name, make in PAGES.items():
        (tmp_path / name).write_text(make())
    assert stale(tmp_path) == []
    (tmp_path / "kpis.md").write_text((tmp_path / "kpis.md").read_text().replace("Throughput", "Thruput"))
    assert [p.rsplit("/", 1)[-1] for p in stale(tmp_path)] == ["kpis.md"]


def test_every_command_declares_what_it_needs():
    import re
    import tomllib

    from agents.cli import build_parser
    from agents.extras import COMMAND_NEEDS, MODULE_EXTRA
    from agents.tools.docs import ROOT

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMAND_NEEDS)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {e: {re.split(r"[<>=\[ ]", d)[0].replace("-", "_") for d in deps} for e, deps in extras.items()}
    for command, (extra, modules, _) in COMMAND_NEEDS.items():
        for m in modules:  # each module a command checks is installed by the extra it names
            assert m in names[extra], (command, m, extra)
    for m, extra in MODULE_EXTRA.items():
        assert m in names[extra], (m, extra)


def test_the_generated_tables_in_hand_written_pages_are_made_from_their_sources():
    from agents.tools.docs import BLOCKS, README, with_blocks

    text = README.read_text()
    assert with_blocks(README, text) == text
    edited = text.replace("| DAgger |", "| DAgger (typed in) |").replace("No imitation results", "Some results")
    assert edited != text and with_blocks(README, edited) == text  # a hand edit is made over
    assert any(name == "expert-scorecard" for _, name in BLOCKS)
    with pytest.raises(ValueError, match="no <!-- baselines"):
        with_blocks(README, "a README without its table")
