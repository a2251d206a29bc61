"""Results as plain data: the store (store, its tables in schema), a run against its history
(history), the regression rule and fingerprints (regress), tonight against the run-to-run
noise (noise), within-run ratios (ratios), exports (export)."""
