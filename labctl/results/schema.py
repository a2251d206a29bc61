"""The results store's tables (sqlite); labctl.results.store creates and migrates them."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    experiment TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,              -- running, finished, interrupted, failed
    labctl_version TEXT NOT NULL,
    params TEXT NOT NULL,              -- JSON
    inventory TEXT NOT NULL,
    seed INTEGER,
    note TEXT,
    controller TEXT,                   -- procs.controller_id of the labctl that ran it
    fingerprint TEXT,                  -- regress.fingerprint digest: what must match to compare
    label TEXT                         -- the suite entry a nightly ran it for
);
CREATE TABLE IF NOT EXISTS run_hosts (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    role TEXT NOT NULL,
    facts TEXT NOT NULL,               -- JSON, as `labctl facts --json` shows a host
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,                -- e.g. accept, pktgen
    warmup INTEGER NOT NULL,
    params TEXT NOT NULL,              -- JSON
    started REAL NOT NULL,
    duration REAL NOT NULL,
    valid INTEGER NOT NULL,
    reason TEXT NOT NULL,              -- why not valid, or why skipped
    state TEXT NOT NULL                -- JSON: sysctls, counters before/after
);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (trial_id, name)
);
CREATE TABLE IF NOT EXISTS nightly (
    id INTEGER PRIMARY KEY,
    suite TEXT NOT NULL,               -- the suite's name
    suite_file TEXT NOT NULL,
    inventory TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,              -- running, ok, regression, failed, crashed
    controller TEXT NOT NULL,          -- procs.controller_id of the labctl that ran it
    runs TEXT NOT NULL DEFAULT '{}',   -- JSON: suite entry name -> run id
    summary TEXT NOT NULL DEFAULT '{}' -- JSON: verdict counts, notes
);
CREATE TABLE IF NOT EXISTS undo (       -- what puts back what a run changed on its hosts
    run_id INTEGER NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    target TEXT NOT NULL,              -- e.g. "qdisc eth0": the first change's undo is kept
    seq INTEGER NOT NULL,              -- the order the run made its changes in
    action TEXT NOT NULL,
    args TEXT NOT NULL,                -- JSON
    PRIMARY KEY (run_id, host, target)
);
CREATE TABLE IF NOT EXISTS accepted (   -- `labctl results.accept`: a history starts here
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    at REAL NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    host TEXT NOT NULL,
    role TEXT NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL
);
"""
