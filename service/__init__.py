"""The alliance evaluation service: ``twin serve``, ``twin worker``, ``twin admin``, ``twin submit``.

Teams upload ONNX policies; workers evaluate them with :func:`agents.evaluation.evaluate` under the
suite's limits, on suites whose seeds may never leave the server; a public leaderboard ranks the
teams' best submissions beside the scripted expert. Everything the service knows lives in its
database (SQLite by default, PostgreSQL by URL), so a server or worker killed at any moment loses
nothing: queued jobs stay queued, a running job's finished episodes are rows that the next worker
resumes from.

Rooms: ``settings`` (what an operator sets), ``models`` and ``migrations`` (the database),
``db`` (engines, sessions, upgrades), ``auth`` (tokens), ``jobs`` (the queue), ``worker`` (runs
jobs), ``results`` (what a team or the public may see of a job), ``routes/`` (the API and pages,
one module per resource), ``app`` (the ASGI app), ``admin`` and ``client`` (the command lines).
"""
