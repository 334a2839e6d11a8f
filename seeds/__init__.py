"""Bundled evaluation suites (``*.toml``)."""
