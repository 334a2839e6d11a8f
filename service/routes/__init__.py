"""The service's routes, one module per resource: submissions, suites, leaderboard, pages."""
