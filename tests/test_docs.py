"""The reference pages in docs/reference/ are what the code generates now, every command's needs
are declared, and every ``twin`` command the pages show is one the CLI takes."""

from __future__ import annotations

import json

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


def test_the_rl_table_shows_each_rows_median_and_its_drop_from_the_best(tmp_path, monkeypatch):
    from agents.tools import docs

    monkeypatch.setattr(docs, "RL", tmp_path / "none.json")
    assert docs.rl_lines() == ["No `rl` results are committed yet (`bench/results/rl/table.json`)."]
    row = {
        "task": "ConveyorPick-v1",
        "algorithm": "SAC",
        "demos": 20,
        "budget_seconds": 1200,
        "steps_median": 60000,
        "seeds": 3,
        "success_median": 0.9,
        "success_min": 0.84,
        "success_max": 0.97,
        "final_weights": True,
        "best_heldout_median": 0.95,
        "below_best_max": 0.11,
        "train_seconds_median": 1187.4,
        "end_to_end_seconds_median": 1302.0,
        "hardware": "2 x AMD EPYC; 2 cores per run",
        "commits": ["abc123"],
    }
    (tmp_path / "table.json").write_text(json.dumps({"machine": "m", "date": "d", "rows": [row]}))
    monkeypatch.setattr(docs, "RL", tmp_path / "table.json")
    (line,) = [ln for ln in docs.rl_lines() if ln.startswith("| ConveyorPick-v1")]
    assert line == (
        "| ConveyorPick-v1 | SAC | 20 | 60,000 env steps (cap 1200 s) | 3 | 0.90; 0.84-0.97 | final weights | "
        "0.95 | 0.11 | 1187 | 1302 | 2 x AMD EPYC; 2 cores per run | `abc123` |"
    )


def _twin_commands(text: str) -> list[str]:
    """The ``twin ...`` commands in a page's code blocks: continued lines joined, each command of a
    pipeline or ``&&`` chain on its own."""
    import re

    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\s(?:&&|\|\||;|\|)\s", line.strip().removeprefix("$ ")):
                if part.strip().startswith("twin "):
                    commands.append(part.strip())
    return commands


def test_every_twin_command_the_docs_show_parses(capsys):
    """A command copied from the README or a guide is one the CLI takes (options, choices, types);
    it is parsed, not run."""
    import shlex

    from agents.cli import build_parser
    from agents.tools.docs import ROOT

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    shown = [(p, c) for p in pages for c in _twin_commands(p.read_text())]
    assert len(shown) > 30
    wrong = []
    for page, command in shown:
        argv = shlex.split(command, comments=True)[1:]
        argv = argv[: next((i for i, a in enumerate(argv) if a.startswith((">", "2>"))), len(argv))]
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code:
                wrong.append(f"{page.relative_to(ROOT)}: {command}: {capsys.readouterr().err.strip()}")
    assert not wrong, "\n".join(wrong)
    # and the check sees a wrong one: an option that `twin train` does not have
    bad = _twin_commands("```bash\ntwin train --env X --algo sac --env-kwargs '{}' \\\n    --out runs/x\n```\n")
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split(bad[0])[1:])


def test_the_rl_tables_residual_rows_stand_beside_the_expert_and_the_student_they_correct(tmp_path, monkeypatch):
    from agents.tools import docs

    def row(algorithm: str, variants: dict) -> dict:
        return {
            "task": "PegInsert-v1",
            "algorithm": algorithm,
            "demos": 0,
            "budget_seconds": 1200,
            "steps_median": 100000,
            "seeds": 3,
            "success_median": variants["nominal"],
            "success_min": 0.0,
            "success_max": 1.0,
            "train_seconds_median": 1100.0,
            "end_to_end_seconds_median": 1300.0,
            "hardware": "m",
            "commits": ["abc123"],
            "variants_median": variants,
            "expert": {"nominal": 1.0, "randomized": 0.99},
            "of_expert": variants["nominal"],
        }

    student = row("DAgger", {"nominal": 1.0, "randomized": 0.47})
    residual = row("SAC, residual on PegInsert-v1-dagger-1200s (randomized)", {"nominal": 0.29, "randomized": 0.17})
    other = {**row("DAgger", {"nominal": 1.0, "randomized": 0.5}), "task": "BinSort-v1"}
    (tmp_path / "learning.json").write_text(json.dumps({"rows": [other, student]}))
    (tmp_path / "rl.json").write_text(json.dumps({"machine": "m", "date": "d", "rows": [residual]}))
    monkeypatch.setattr(docs, "BASELINES", tmp_path / "learning.json")
    monkeypatch.setattr(docs, "RL", tmp_path / "rl.json")
    lines = docs.rl_lines()
    beside = [ln.split(" | ")[1] for ln in lines[lines.index("") + 1 :] if ln.startswith("| PegInsert-v1")]
    assert beside[-3:] == ["scripted expert", "DAgger", residual["algorithm"]]
    assert not any(ln.startswith("| BinSort-v1") for ln in lines)  # no student of a task the matrix did not correct
    (student_line,) = [ln for ln in lines if ln.startswith("| PegInsert-v1 | DAgger")]
    assert "| 1.00 | 0.47 |" in student_line
