"""``python -m agents.cli``: the ``twin`` command."""

from agents.cli import main

main()
