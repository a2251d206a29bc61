"""Benchmark: labctl against its peers (a hand-written fabric script, pyinfra, Ansible) on one
workload, on K-host namespace labs of its own (K = 4, 16, 32, 64 by default).

The workload, the same for every tool (benchmarks/data/peers/): ensure /root/peers; `uname -r`
with its output brought to the controller; /root/peers/bench.conf from a template (the host's
inventory name and address); /root/peers/fixed.txt with fixed content, written only if it
differs; `tc qdisc show dev lo`, output brought back too. labctl and Ansible run the same
playbook (peers.yml), pyinfra a deploy doing the same (pyinfra_deploy.py), the fabric script
benchmarks/handwritten_peers.py. Every tool works on all K hosts at once (forks = K).

Per K, one lab (built and always removed); per repeat, each tool in a rotated order: reset
(remove every host's /root/peers, straight from the controller: a host's /root is its lab
directory's `home`), a first run, verify, a no-op run, verify. Verified: each host's files and
their contents, both command outputs of every host as the tool handed them back (the kernel
release equals the controller's: the hosts share its kernel), changes the tool reported
(none on the no-op run), and that the no-op run rewrote nothing (inode and mtime unchanged).
Before the first K, one round of every tool, verified but not measured, warms the page
cache and the .pyc files.

Measured per run, each tool run as a whole process:
- wall time, from its start until it was reaped;
- controller CPU: its user+sys with all its reaped descendants (os.wait4), plus, for Ansible,
  its ControlPersist ssh masters' CPU (they are stopped at the end of every run);
- host CPU: CPU spent inside the lab hosts. Each host's listening sshd (its PID from the lab's
  record) accumulates in /proc/PID/stat (fields 14-17: utime, stime, cutime, cstime) the CPU
  of each per-connection sshd it reaps, and thus of every command and SFTP session that ran
  under it. The sum over hosts is read before and after the run, each time after waiting
  (up to 5 s) until no listener has a child left. Clock-tick resolution (1/SC_CLK_TCK s).
The hosts run on the controller's own cores: host CPU and controller CPU compete, so a
tool that spends much of either (Ansible) grows CPU-bound with K.

Prints per K the medians (wall, CPU) and their ratios to labctl, then how each tool's times
grow with K (time at K / time at the smallest K). `--json FILE` keeps every measurement.
Needs root. Makes its own virtualenv for ansible-core and pyinfra, once, in
~/.cache/labctl-bench/peers-venv (pip); labctl and the fabric script run from this .venv.

usage: python benchmarks/peers.py [--hosts 4,16,32,64] [--repeat 3]
                                  [--tools labctl,fabric,pyinfra,ansible] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
from benchlib import bench_lab
from peers_tools import TEMPLATE, TOOLS, LabRun, Tool, bench_venv, cpu_seconds, parents, versions

from labctl.labs.netns import LocalLab
from labctl.labs.netns_spec import LabSpec

FIXED = "fixed content\n"
FILES = ("bench.conf", "fixed.txt")
SETTLE_S = 5.0


@dataclass(frozen=True)
class Measure:
    tool: str
    hosts: int
    repeat: int
    run: str  # "first" or "noop"
    wall: float
    controller_cpu: float
    host_cpu: float
    settled: bool  # every listener had reaped its children when host CPU was read
    changed: int | None  # changes the tool reported, where it says


@dataclass(frozen=True)
class Finished:
    wall: float
    cpu: float
    status: int
    stdout: str
    stderr: str


@dataclass
class Reaped:
    end: float = 0.0
    status: int = 0
    usage: resource.struct_rusage | None = None


def run_process(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Finished:
    """Runs argv as a whole process; wall time until reaped, CPU of it and its reaped tree."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        reaped = Reaped()

        def reap() -> None:
            _, reaped.status, reaped.usage = os.wait4(proc.pid, 0)
            reaped.end = time.perf_counter()

        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        timed_out = True
        try:
            reaper.join(timeout)
            timed_out = reaper.is_alive()
        finally:
            if timed_out:  # or interrupted
                os.killpg(proc.pid, signal.SIGKILL)
                reaper.join(10)
        if timed_out or reaped.usage is None:
            raise SystemExit(f"benchmark: {argv[0]} did not finish within {timeout:.0f} s")
        proc.returncode = os.waitstatus_to_exitcode(reaped.status)
        out.seek(0)
        err.seek(0)
        return Finished(
            wall=reaped.end - started,
            cpu=reaped.usage.ru_utime + reaped.usage.ru_stime,
            status=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


# ---- the lab side ---------------------------------------------------------------------------


def listeners(spec: LabSpec) -> list[int]:
    lab = LocalLab(spec)
    pids = [lab.sshd_pid(h.name) for h in spec.hosts]
    if None in pids:
        raise SystemExit(f"benchmark: a lab sshd is not running: {pids}")
    return [p for p in pids if p is not None]


def settle(pids: list[int]) -> bool:
    """Waits (bounded) until no listener has a child: every connection ended and was reaped."""
    wanted = set(pids)
    deadline = time.monotonic() + SETTLE_S
    while wanted & set(parents().values()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def host_cpu(pids: list[int]) -> tuple[float, bool]:
    settled = settle(pids)
    return sum(cpu_seconds(p) for p in pids), settled


def peers_dir(spec: LabSpec, host: str) -> Path:
    return spec.host_dir(host) / "home" / "peers"  # the host's /root/peers


def reset(spec: LabSpec) -> None:
    for h in spec.hosts:
        shutil.rmtree(peers_dir(spec, h.name), ignore_errors=True)
        if peers_dir(spec, h.name).exists():
            raise SystemExit(f"benchmark: could not remove {peers_dir(spec, h.name)}")


Stamps = dict[tuple[str, str], tuple[int, int]]


def check_files(spec: LabSpec, template: jinja2.Template) -> Stamps:
    """Each host's files with the wanted content; their inode and mtime."""
    stamps: Stamps = {}
    for h in spec.hosts:
        wanted = {
            "bench.conf": template.render(inventory_hostname=h.name, ansible_host=h.address),
            "fixed.txt": FIXED,
        }
        for name in FILES:
            path = peers_dir(spec, h.name) / name
            if not path.is_file() or path.read_text() != wanted[name]:
                have = path.read_text() if path.is_file() else "(missing)"
                raise AssertionError(f"{h.name}: /root/peers/{name}: {have!r} != {wanted[name]!r}")
            st = path.stat()
            stamps[(h.name, name)] = (st.st_ino, st.st_mtime_ns)
    return stamps


def check_outputs(spec: LabSpec, outputs: dict[str, dict[str, str]], qdisc: str) -> None:
    wanted = {"uname": os.uname().release, "qdisc": qdisc}
    for h in spec.hosts:
        have = outputs.get(h.name)
        if have is None or {k: str(have.get(k, "")).strip() for k in wanted} != wanted:
            raise AssertionError(f"{h.name}: outputs {have!r} != {wanted!r}")


def lo_qdisc(spec: LabSpec) -> str:
    """What `tc qdisc show dev lo` prints on a lab host (read once, in its namespace)."""
    argv = ["ip", "netns", "exec", spec.netns(spec.hosts[0].name), "tc", "qdisc", "show", "dev"]
    out = subprocess.run([*argv, "lo"], capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


# ---- one run, one round ---------------------------------------------------------------------


@dataclass
class Bench:
    spec: LabSpec
    tools: dict[str, Tool]
    pids: list[int]
    qdisc: str
    template: jinja2.Template
    timeout: float

    def run(self, tool: Tool, kind: str, repeat: int) -> tuple[Measure, Stamps]:
        tool.before_run()
        before, settled_before = host_cpu(self.pids)
        done = run_process(tool.argv(), tool.env(), tool.dir, self.timeout)
        extra = tool.after_run()
        after, settled_after = host_cpu(self.pids)
        where = f"{tool.name} {kind} run on {len(self.spec.hosts)} hosts"
        if done.status != 0:
            tail = (done.stderr.strip() or done.stdout.strip())[-3000:]
            raise SystemExit(f"benchmark: {where} exited {done.status}:\n{tail}")
        try:
            stamps = check_files(self.spec, self.template)
            check_outputs(self.spec, tool.outputs(done.stdout), self.qdisc)
            changed = tool.changed(done.stdout)
            if changed is not None and (changed == 0) != (kind == "noop"):
                raise AssertionError(f"it reported {changed} changes")
        except (AssertionError, RuntimeError, KeyError, ValueError) as exc:
            raise SystemExit(
                f"benchmark: {where}: {exc}\n--- stdout (end)\n{done.stdout[-2000:]}"
                f"\n--- stderr (end)\n{done.stderr[-2000:]}"
            ) from exc
        measure = Measure(
            tool.name,
            len(self.spec.hosts),
            repeat,
            kind,
            done.wall,
            done.cpu + extra,
            after - before,
            settled_before and settled_after,
            changed,
        )
        return measure, stamps

    def round(self, tool: Tool, repeat: int) -> list[Measure]:
        """Reset, first run, no-op run; the no-op run must rewrite nothing."""
        reset(self.spec)
        first, stamps = self.run(tool, "first", repeat)
        noop, again = self.run(tool, "noop", repeat)
        rewritten = sorted(k for k in stamps if stamps[k] != again[k])
        if rewritten:
            raise SystemExit(f"benchmark: {tool.name}'s no-op run rewrote {rewritten[:5]} ...")
        return [first, noop]


def bench_k(k: int, names: list[str], args: argparse.Namespace, warm: bool) -> list[Measure]:
    measures: list[Measure] = []
    with (
        bench_lab("pe", 214, k) as (spec, inventory),
        tempfile.TemporaryDirectory(prefix="labctl-peers-") as work,
    ):
        lab = LabRun(spec, inventory, Path(work), args.bin_dir)
        tools = {n: TOOLS[n](lab) for n in names}
        template = jinja2.Template(TEMPLATE.read_text(), keep_trailing_newline=True)
        bench = Bench(spec, tools, listeners(spec), lo_qdisc(spec), template, args.timeout)
        try:
            if warm:
                print("  warm-up round (not measured)", flush=True)
                for name in names:
                    bench.round(tools[name], -1)
            for r in range(args.repeat):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    measures += bench.round(tools[name], r)
                    print(f"  repeat {r + 1}: {name} done", flush=True)
        finally:
            for tool in tools.values():
                tool.after_run()  # no ssh master outlives the lab
    return measures


# ---- the report ------------------------------------------------------------------------------


def median(measures: list[Measure], tool: str, k: int, run: str, what: str) -> float:
    values = [getattr(m, what) for m in measures if (m.tool, m.hosts, m.run) == (tool, k, run)]
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def table_k(measures: list[Measure], names: list[str], k: int, repeat: int) -> list[str]:
    lines = [
        f"K={k} hosts: median of {repeat} run(s) per tool, seconds; ratios are tool/labctl",
        f"{'tool':<8} {'first':>7} {'no-op':>7} {'ctl CPU':>8} {'host CPU':>9}   "
        f"{'first':>7} {'no-op':>7} {'ctl CPU':>8} {'host CPU':>9}",
        f"{'':<8} {'':>7} {'':>7} {'(no-op)':>8} {'(no-op)':>9}   "
        f"{'ratio':>7} {'ratio':>7} {'ratio':>8} {'ratio':>9}",
    ]
    base = {
        w: median(measures, "labctl", k, run, attr)
        for w, run, attr in (
            ("first", "first", "wall"),
            ("noop", "noop", "wall"),
            ("ctl", "noop", "controller_cpu"),
            ("host", "noop", "host_cpu"),
        )
    }
    for name in names:
        first = median(measures, name, k, "first", "wall")
        noop = median(measures, name, k, "noop", "wall")
        ctl = median(measures, name, k, "noop", "controller_cpu")
        host = median(measures, name, k, "noop", "host_cpu")
        lines.append(
            f"{name:<8} {first:7.2f} {noop:7.2f} {ctl:8.2f} {host:9.2f}   "
            f"{ratio(first, base['first']):>7} {ratio(noop, base['noop']):>7} "
            f"{ratio(ctl, base['ctl']):>8} {ratio(host, base['host']):>9}"
        )
    first_cpu = [
        f"{n}: ctl {median(measures, n, k, 'first', 'controller_cpu'):.2f} s, "
        f"host {median(measures, n, k, 'first', 'host_cpu'):.2f} s"
        for n in names
    ]
    lines.append("CPU of the first run: " + "; ".join(first_cpu))
    return lines


def table_growth(measures: list[Measure], names: list[str], ks: list[int]) -> list[str]:
    head = " ".join(f"{'K=' + str(k):>7}" for k in ks)
    lines = [
        f"growth with K: a tool's median time at K / its time at K={ks[0]}",
        f"{'tool':<8} {'run':<6} {head}",
    ]
    for name in names:
        for run in ("noop", "first"):
            base = median(measures, name, ks[0], run, "wall")
            cells = " ".join(
                f"{ratio(median(measures, name, k, run, 'wall'), base):>7}" for k in ks
            )
            lines.append(f"{name:<8} {run:<6} {cells}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="4,16,32,64", help="lab sizes K, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--timeout", type=float, default=900, help="seconds per tool run")
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    args = parser.parse_args()
    ks = sorted({int(k) for k in args.hosts.split(",")})
    names = [n.strip() for n in args.tools.split(",")]
    if unknown := set(names) - set(TOOLS):
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}; choose from {list(TOOLS)}")
    if not 1 <= args.repeat <= 50 or not all(1 <= k <= 200 for k in ks):
        parser.error("--repeat 1..50, --hosts 1..200 each")
    args.bin_dir = bench_venv()
    used = versions(args.bin_dir)
    print("versions: " + ", ".join(f"{p} {v}" for p, v in used.items()), flush=True)

    measures: list[Measure] = []
    for i, k in enumerate(ks):
        print(f"K={k}: building a {k}-host lab", flush=True)
        measures += bench_k(k, names, args, warm=i == 0)
    measured = [m for m in measures if m.repeat >= 0]
    if unsettled := [m for m in measured if not m.settled]:
        print(f"note: {len(unsettled)} run(s) read host CPU with an sshd child still alive")
    print()
    for k in ks:
        print("\n".join(table_k(measured, names, k, args.repeat)) + "\n")
    if "labctl" not in names:
        print("(no labctl in --tools: ratios are '-')\n")
    print("\n".join(table_growth(measured, names, ks)))
    if args.json:
        doc = {"versions": used, "hosts": ks, "tools": names, "repeat": args.repeat}
        doc["measures"] = [dataclasses.asdict(m) for m in measures]
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
