"""A nightly lab run: the suite file (suite), the lab lock (lock), what a killed run left on
the hosts (leftovers), and the run itself (run)."""
