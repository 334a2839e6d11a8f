"""``twin eval``: seed suites, the episode runner, scorecards and HTML reports."""
