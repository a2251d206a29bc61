"""What each stored run ran on and with, as a trend plot marks it: its lab, its hosts' kernel
releases and the labctl version that ran it (recorded when the run started: `runs.lab`,
`runs.labctl_version`, each host's facts in `run_hosts`). Read-only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labctl.results.store import ResultsStore


@dataclass(frozen=True)
class RunStamp:
    kernel: str  # "6.1.0-26-amd64", or "6.1.0-26-amd64 / 6.5.0-1" when the hosts differ
    labctl_version: str  # "" when not recorded
    lab: str = ""  # the lab it ran on (a shared store holds several)


def run_stamps(store: ResultsStore, run_ids: Iterable[int]) -> dict[int, RunStamp]:
    """Run id -> its stamp, for each of `run_ids` the store has."""
    out: dict[int, RunStamp] = {}
    for run_id in dict.fromkeys(run_ids):
        run = store.run(run_id)
        releases = sorted(
            {
                str(facts["kernel_release"])
                for _, facts in store.hosts(run_id).values()
                if facts.get("kernel_release")
            }
        )
        out[run_id] = RunStamp(" / ".join(releases), run.labctl_version or "", run.lab)
    return out
