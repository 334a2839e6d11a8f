"""``twin eval``: seed suites, the episode runner, scorecards and HTML reports.

``evaluate(policy, suite, out, ...)`` (in ``api``) is the evaluation as a library: what
``twin eval`` runs, for Python users and services.
"""

from __future__ import annotations

from typing import Any

_API = ("evaluate", "Evaluation", "EvalError", "EvalInterrupted", "merge_limits")
__all__ = list(_API)


def __getattr__(name: str) -> Any:  # imported on first use: the submodules stay light to import
    if name in _API:
        from agents.evaluation import api

        return getattr(api, name)
    raise AttributeError(f"module 'agents.evaluation' has no attribute {name!r}")
