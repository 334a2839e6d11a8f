"""Agents and the ``twin`` command line.

Rooms:

* ``ppo``, ``sac``, ``bc``: one algorithm each, readable top to bottom.
* ``train``: ``twin train`` / ``twin export``: run folders, resume, final evaluation, ONNX.
* ``common/``: what the algorithms share: configs, networks, replay storage, checkpoints,
  observation spaces, the run folder and its metrics.
* ``collect/``: where experience comes from: vector envs of CPU worker processes, expert
  demonstrations.
* ``evaluation/``: ``twin eval``: seed suites, the episode runner, scorecards and reports.
* ``tools/``: ``twin play``, ``twin smoke``, ``twin bench``.
* ``cli``: the ``twin`` command itself.
"""
