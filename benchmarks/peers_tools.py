"""The four tools of benchmarks/peers.py: how each is run on a lab, and how its results are
read back; the benchmark's own virtualenv (ansible-core, pyinfra); and the few /proc reads
the benchmark measures with (a process's CPU, whose children are alive).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import LABCTL

from labctl.labs.netns_spec import LabSpec

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "peers"
PLAYBOOK = DATA / "peers.yml"
TEMPLATE = DATA / "templates" / "bench.conf.j2"
BENCH_VENV = Path.home() / ".cache" / "labctl-bench" / "peers-venv"
BENCH_PACKAGES = ("ansible-core", "pyinfra", "fabric", "jinja2")
CLK_TCK = os.sysconf("SC_CLK_TCK")

Outputs = dict[str, dict[str, str]]  # host -> {"uname": ..., "qdisc": ...}


# ---- /proc -------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 is index 0)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime (fields 14-17): the process and its reaped children."""
    fields = proc_stat(pid)
    if fields is None:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def parents() -> dict[int, int]:
    """Every live process's parent."""
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields is not None:
                out[int(entry.name)] = int(fields[1])
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, wait (bounded), SIGKILL what is left. By PID only."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists()]
            time.sleep(0.02)
        if not pids:
            return


# ---- the benchmark's virtualenv ------------------------------------------------------------


def bench_venv() -> Path:
    """The bin directory of ~/.cache/labctl-bench/peers-venv, made (pip) only if missing."""
    bin_dir = BENCH_VENV / "bin"
    if (bin_dir / "ansible-playbook").exists() and (bin_dir / "pyinfra").exists():
        return bin_dir
    print(f"making {BENCH_VENV}: pip install {' '.join(BENCH_PACKAGES)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True, timeout=300)
    subprocess.run(
        [str(bin_dir / "pip"), "install", "-q", *BENCH_PACKAGES],
        check=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    return bin_dir


def versions(bin_dir: Path) -> dict[str, str]:
    """The versions in use: labctl's (and the hand-written script's) and the bench venv's."""
    here = {f"{p} (.venv)": importlib.metadata.version(p) for p in ("labctl", "fabric", "paramiko")}
    code = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "['ansible-core', 'pyinfra', 'paramiko', 'jinja2']}))"
    )
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    theirs = {f"{p} (bench venv)": v for p, v in json.loads(out.stdout).items()}
    return here | theirs


# ---- the tools -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabRun:
    """What every tool is given: the lab, labctl's inventory, a work directory, the forks."""

    spec: LabSpec
    inventory: Path
    work: Path
    bin_dir: Path

    @property
    def forks(self) -> int:
        return len(self.spec.hosts)


class Tool:
    """One tool: its command line and environment; after a run, what it reported."""

    name = ""

    def __init__(self, lab: LabRun) -> None:
        self.lab = lab
        self.dir = lab.work / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out = self.dir / "out"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def before_run(self) -> None:
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir()

    def after_run(self) -> float:
        """Controller CPU seconds the run spent outside the tool's process tree."""
        return 0.0

    def outputs(self, stdout: str) -> Outputs:
        raise NotImplementedError

    def changed(self, stdout: str) -> int | None:
        """How many changes the tool itself reported, where it says so."""
        return None


LABCTL_TASKS = {"kernel release": "uname", "root qdisc of lo": "qdisc"}  # in peers.yml


class Labctl(Tool):
    name = "labctl"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            *LABCTL,
            "play",
            str(PLAYBOOK),
            "-i",
            str(self.lab.inventory),
            "--json",
            "-f",
            str(self.lab.forks),
        ]

    def outputs(self, stdout: str) -> Outputs:
        """From the two command tasks' results (its `debug` of a dict gives the dict's
        Python repr as a string, where Ansible gives the dict)."""
        out: Outputs = {}
        for r in json.loads(stdout)["results"]:
            if r["task"] in LABCTL_TASKS:
                out.setdefault(r["host"], {})[LABCTL_TASKS[r["task"]]] = r["output"]["stdout"]
        return out

    def changed(self, stdout: str) -> int | None:
        return sum(r["changed"] for r in json.loads(stdout)["recap"].values())


class Fabric(Tool):
    name = "fabric"

    def argv(self) -> list[str]:
        spec = self.lab.spec
        return [
            sys.executable,
            str(HERE / "handwritten_peers.py"),
            str(TEMPLATE),
            str(spec.key_file),
            str(spec.known_hosts_file),
            str(self.lab.forks),
            *(f"{h.name}={h.address}" for h in spec.hosts),
        ]

    def outputs(self, stdout: str) -> Outputs:
        return dict(json.loads(stdout)["hosts"])

    def changed(self, stdout: str) -> int | None:
        return int(json.loads(stdout)["wrote"])


class Pyinfra(Tool):
    name = "pyinfra"

    def __init__(self, lab: LabRun) -> None:
        super().__init__(lab)
        spec = lab.spec
        common = {
            "ssh_user": "root",
            "ssh_key": str(spec.key_file),
            "ssh_known_hosts_file": str(spec.known_hosts_file),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        hosts = [(h.name, {"ssh_hostname": h.address, **common}) for h in spec.hosts]
        self.inventory = self.dir / "inventory.py"
        self.inventory.write_text(f"lab = {hosts!r}\n")

    def argv(self) -> list[str]:
        return [
            str(self.lab.bin_dir / "pyinfra"),
            "-y",
            "--parallel",
            str(self.lab.forks),
            str(self.inventory),
            str(DATA / "pyinfra_deploy.py"),
        ]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PEERS_OUT=str(self.out), PEERS_TEMPLATE=str(TEMPLATE))

    def outputs(self, stdout: str) -> Outputs:
        return {p.stem: json.loads(p.read_text()) for p in self.out.glob("*.json")}


RECAP_RE = re.compile(
    r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


class Ansible(Tool):
    """ansible-playbook with its defaults (ssh with ControlPersist, no pipelining), its state
    kept in the work directory. Each run ends with its ssh masters stopped (their CPU added
    to the controller's), so every run starts without a connection, as the others do."""

    name = "ansible"

    def __init__(self, lab: LabRun) -> None:
        super().__init__(lab)
        spec = lab.spec
        self.cp_dir = self.dir / "cp"
        self.cp_dir.mkdir(exist_ok=True)
        (self.dir / "ansible.cfg").write_text("")
        ssh_args = (
            f"-F /dev/null -o UserKnownHostsFile={spec.known_hosts_file} "
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        )
        lines = ["[lab]"] + [f"{h.name} ansible_host={h.address}" for h in spec.hosts]
        lines += [
            "",
            "[lab:vars]",
            "ansible_user=root",
            f"ansible_ssh_private_key_file={spec.key_file}",
            f"ansible_ssh_common_args='{ssh_args}'",
            "ansible_python_interpreter=/usr/bin/python3",
        ]
        self.inventory = self.dir / "inventory.ini"
        self.inventory.write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return [
            str(self.lab.bin_dir / "ansible-playbook"),
            "-i",
            str(self.inventory),
            "-f",
            str(self.lab.forks),
            str(PLAYBOOK),
        ]

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            ANSIBLE_CONFIG=str(self.dir / "ansible.cfg"),
            ANSIBLE_HOME=str(self.dir / "home"),
            ANSIBLE_LOCAL_TEMP=str(self.dir / "tmp"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.cp_dir),
            ANSIBLE_CALLBACKS_ENABLED="tree",
            ANSIBLE_CALLBACK_TREE_DIR=str(self.out),
            ANSIBLE_DEPRECATION_WARNINGS="False",
            ANSIBLE_NOCOLOR="1",
        )

    def masters(self) -> list[int]:
        """The ssh masters of this tool's runs: ssh processes naming our ControlPath dir."""
        mine = str(self.cp_dir)
        return [pid for pid in parents() if mine in cmdline(pid) and _exe(pid) == "ssh"]

    def after_run(self) -> float:
        pids = self.masters()
        cpu = sum(cpu_seconds(p) for p in pids)
        stop(pids)
        return cpu

    def outputs(self, stdout: str) -> Outputs:
        return {p.name: json.loads(p.read_text())["msg"] for p in self.out.iterdir()}

    def changed(self, stdout: str) -> int | None:
        recap = RECAP_RE.findall(stdout)
        if len(recap) != len(self.lab.spec.hosts) or any(int(u) or int(f) for *_, u, f in recap):
            raise RuntimeError(f"ansible recap: {recap}")
        return sum(int(c) for _, c, _, _ in recap)


def _exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


TOOLS: dict[str, type[Tool]] = {t.name: t for t in (Labctl, Fabric, Pyinfra, Ansible)}
