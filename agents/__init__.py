"""Agents and the `twin` command line."""
