"""The local lab: network namespaces as hosts, each with its own sshd (docs/labs.md).

Each host is a network namespace joined by a veth pair to one bridge (the docker0 pattern),
with its own address, hostname (UTS namespace), a private /run (sshd 9.2 needs a root-owned
0755 /run/sshd), a private /root that is also its work directory (the controller's /root
rc files would otherwise run on every SSH command), and an OpenSSH sshd with its own host key.

`up` records every namespace, link and process it makes in `lab.json` as soon as it exists,
so `down` removes exactly those, even after an `up` that failed half-way.

A host may also carry "containers" (`labctl_lab_containers: N`), made as a docker host makes
them: inside the host's network namespace a bridge `docker0`, and N network namespaces c1..cN
created in the host's own mount namespace (so `ip netns list` over SSH on the host shows them,
and only there), each joined to docker0 by a veth pair: `veth<k>` on the host, `eth0` inside.

Why one module of ~600 lines: it is one class, a namespace lab's whole life (up, repair,
containers, down, status), whose steps share the lab's record; what it is made of lives
beside it (labs/netns_spec.py the spec, labs/namespaces.py the namespaces, labs/base.py what
every lab shares).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.errors import LabError
from labctl.labs.base import (
    LabChange,
    LabReport,
    RecordedLab,
    atomic_write,
    run,
    terminate,
)
from labctl.labs.namespaces import (
    host_netns_list,
    in_host,
    link_exists,
    netns_identity,
    netns_list,
    netns_pids,
    pids_in_netns,
    remove,
)
from labctl.labs.netns_spec import (
    CONTAINER_BRIDGE,
    LabHostSpec,
    LabHostStatus,
    LabSpec,
)
from labctl.procs import process_start_time

SSHD = "/usr/sbin/sshd"


# ---------------------------------------------------------------------------- local commands


def _is_our_sshd(pid: int, start: int | None, config: Path) -> bool:
    """True only if PID is still the sshd we started: same start time, binary and config."""
    if process_start_time(pid) != start or start is None:
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        # sshd rewrites its argv into a title: "sshd: /usr/sbin/sshd -f CONFIG [listener] ..."
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return exe == SSHD and f" -f {config} ".encode() in title + b" "


SSHD_CONFIG = """\
# written by labctl for lab host {host}
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
# many hosts run steps in parallel, each over several channels
MaxStartups 200:30:400
MaxSessions 64
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
"""


class LocalLab(RecordedLab):
    """Brings a `LabSpec` up and down on this machine. Needs root."""

    def __init__(self, spec: LabSpec, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(spec.record_file, progress)
        self.spec = spec

    @staticmethod
    def _require_root(action: str) -> None:
        if os.geteuid() != 0:
            raise LabError(
                f"lab.{action} needs root (it makes namespaces, links and sshd); run it as root"
            )

    # -- up
    def up(self) -> LabReport:
        self._require_root("up")
        for tool in ("ip", "unshare", "ssh-keygen", "nsenter"):
            if shutil.which(tool) is None:
                raise LabError(
                    f"{tool} not found: apt-get install iproute2 util-linux openssh-client"
                )
        if not os.access(SSHD, os.X_OK):
            raise LabError(f"{SSHD} not found: apt-get install openssh-server")
        spec = self.spec
        report = LabReport(spec.name)
        self._record = self._load_record()
        self._check_same_lab()
        self._claim_state_dir(spec.name, [spec.host_dir(h.name) for h in spec.hosts])
        self._record.update(
            name=spec.name,
            subnet=str(spec.subnet),
            hosts={h.name: h.address for h in spec.hosts},
            containers=spec.containers,
        )
        self._save_record()

        report.changes.append(self._ensure_key(spec.key_file, f"labctl@{spec.name}"))
        report.changes.append(self._ensure_bridge())
        known_hosts = []
        for index, host in enumerate(spec.hosts, start=1):
            report.changes.extend(self._ensure_host(index, host))
            pub = (spec.host_dir(host.name) / "ssh_host_ed25519_key.pub").read_text().split()
            known_hosts.append(f"{host.address} {pub[0]} {pub[1]}\n")
        text = "".join(known_hosts)
        kh = spec.known_hosts_file
        if not kh.exists() or kh.read_text() != text:
            atomic_write(kh, text)
            report.changes.append(LabChange("known_hosts", True))
        self._wait_for_ssh()
        return report

    def _check_same_lab(self) -> None:
        """A state directory holds one lab: refuse to reshape a lab that is up."""
        rec = self._record
        hosts = {h.name: h.address for h in self.spec.hosts}
        if rec.get("hosts") and (
            rec.get("name") != self.spec.name
            or rec.get("subnet") != str(self.spec.subnet)
            or rec.get("hosts") != hosts
            or rec.get("containers", {}) != self.spec.containers
        ):
            containers = rec.get("containers") or {}
            raise LabError(
                f"{self.spec.record_file} holds lab {rec.get('name')!r} ({rec.get('subnet')}, "
                f"hosts {', '.join(rec['hosts'])}"
                + "".join(f", {n} containers on {h}" for h, n in containers.items())
                + ") and it differs from the one asked for; run lab.down first to change it"
            )
        self._check_subnet_free()

    def _check_subnet_free(self) -> None:
        """Refuse a subnet that this machine already routes through another device."""
        out = run(["ip", "-j", "-4", "route", "show"]).stdout
        for route in json.loads(out or "[]"):
            dst = route.get("dst", "")
            if dst in ("default", "") or route.get("dev") == self.spec.bridge:
                continue
            try:
                net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
            except ValueError:
                continue
            if net.overlaps(self.spec.subnet):
                raise LabError(
                    f"lab subnet {self.spec.subnet} overlaps {dst} on {route.get('dev')}: "
                    f"choose another labctl_lab_subnet"
                )

    def _ensure_bridge(self) -> LabChange:
        br = self.spec.bridge
        if link_exists(br):
            if br not in self._record.get("bridge", {}):
                raise LabError(f"a link named {br} exists and this lab did not make it")
            return LabChange(f"bridge {br}", False)
        self._note("bridge", br)  # recorded first: an interrupted up is still undone by down
        run(["ip", "link", "add", br, "type", "bridge"])
        prefix = self.spec.subnet.prefixlen
        run(["ip", "addr", "add", f"{self.spec.gateway}/{prefix}", "dev", br])
        run(["ip", "link", "set", br, "up"])
        return LabChange(f"bridge {br}", True)

    def _ensure_host(self, index: int, host: LabHostSpec) -> list[LabChange]:
        spec = self.spec
        ns, veth = spec.netns(host.name), spec.veth(index)
        changes = []
        if ns not in netns_list():
            self._note("netns", ns)
            run(["ip", "netns", "add", ns])
            self._note("netns", ns, **self._identity(ns))
            changes.append(LabChange(f"netns {ns}", True))
        elif ns not in self._record.get("netns", {}):
            raise LabError(f"a namespace named {ns} exists and this lab did not make it")
        elif not self._is_ours(ns):
            raise LabError(
                f"the namespace named {ns} is not the one this lab made (it was removed and "
                "made again by something else): remove it, or run lab.down"
            )
        elif "inode" not in self._record["netns"][ns]:  # recorded by an older labctl
            self._note("netns", ns, **self._identity(ns))
        if not link_exists(veth):
            self._note("veth", veth)
            # The namespace end is created inside it, named eth0 like a container's.
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            changes.append(LabChange(f"veth {veth}", True))
        elif veth not in self._record.get("veth", {}):
            raise LabError(f"a link named {veth} exists and this lab did not make it")
        if self._configure_veth(ns, veth, host.address):
            changes.append(LabChange(f"address {host.address}", True))
        changes.append(self._ensure_sshd(host))
        if host.containers:
            changes.extend(self._ensure_containers(host))
        return changes

    # -- containers (made after the host's sshd: they live in its mount namespace)
    def _ensure_containers(self, host: LabHostSpec) -> list[LabChange]:
        spec = self.spec
        sshd_pid = int(self._record["sshd"][host.name]["pid"])  # _ensure_sshd checked it
        subnet = spec.container_subnet(host.name)
        changes = [self._ensure_docker0(host, sshd_pid, subnet)]
        present = host_netns_list(sshd_pid)
        mntns = os.stat(f"/proc/{sshd_pid}/ns/mnt").st_ino
        for k in range(1, host.containers + 1):
            changes.append(self._ensure_container(host, k, sshd_pid, present, mntns))
        return changes

    def _ensure_docker0(
        self, host: LabHostSpec, sshd_pid: int, subnet: ipaddress.IPv4Network
    ) -> LabChange:
        """The bridge lives in the host's network namespace, which outlives its sshd."""
        address = f"{subnet.network_address + 1}/{subnet.prefixlen}"
        what = f"{CONTAINER_BRIDGE} {host.name}"
        proc = in_host(sshd_pid, ["ip", "-j", "addr", "show", "dev", CONTAINER_BRIDGE], False)
        if proc.returncode == 0:
            if host.name not in self._record.get(CONTAINER_BRIDGE, {}):
                raise LabError(
                    f"{host.name}: a link named {CONTAINER_BRIDGE} exists and this lab did not "
                    f"make it"
                )
            info = (json.loads(proc.stdout) or [{}])[0]
            locals_ = {f"{a.get('local')}/{a.get('prefixlen')}" for a in info.get("addr_info", [])}
            if address in locals_ and "UP" in info.get("flags", []):
                return LabChange(what, False)
        else:
            self._note(CONTAINER_BRIDGE, host.name, netns=self.spec.netns(host.name))
            in_host(sshd_pid, ["ip", "link", "add", CONTAINER_BRIDGE, "type", "bridge"])
        in_host(sshd_pid, ["ip", "addr", "replace", address, "dev", CONTAINER_BRIDGE])
        in_host(sshd_pid, ["ip", "link", "set", CONTAINER_BRIDGE, "up"])
        return LabChange(what, True)

    def _ensure_container(
        self, host: LabHostSpec, k: int, sshd_pid: int, present: set[str], mntns: int
    ) -> LabChange:
        key, name, veth = f"{host.name}/c{k}", f"c{k}", f"veth{k}"
        containers = self._record.setdefault("container", {})
        rec = containers.get(key)
        made, why = False, ""
        if name in present and rec is None:
            raise LabError(
                f"{host.name}: a namespace named {name} exists and this lab did not make it"
            )
        if name not in present:
            if rec is not None:
                # Recorded but not in the host's /run/netns: its sshd was restarted, and the
                # entry went with the old mount namespace. Clear what may be left of the old
                # one (its processes, its veth end on docker0), then make it anew.
                restarted = rec.get("mntns") != mntns
                why = "sshd restarted" if restarted else "it was gone"
                left = self._clear_stale_container(key, rec, sshd_pid)
                if left:
                    why += f", stopped {left} processes left in the old one"
                self._say(f"{host.name}: container {name} re-made ({why})")
            elif in_host(sshd_pid, ["ip", "link", "show", "dev", veth], False).returncode == 0:
                raise LabError(
                    f"{host.name}: a link named {veth} exists and this lab did not make it"
                )
            self._note(
                "container",
                key,
                host=host.name,
                netns=name,
                veth=veth,
                address=str(self.spec.container_address(host.name, k)),
                mntns=mntns,
            )
            in_host(sshd_pid, ["ip", "netns", "add", name])
            identity = netns_identity(f"/proc/{sshd_pid}/root/run/netns/{name}")
            if identity is not None:
                containers[key].update(inode=identity[0], cookie=identity[1])
                self._save_record()
            made = True
        if in_host(sshd_pid, ["ip", "link", "show", "dev", veth], False).returncode != 0:
            in_host(
                sshd_pid,
                ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name],
            )
            made = True
        if self._configure_container(host, k, sshd_pid):
            made = True
        return LabChange(f"container {key}" + (f" re-made: {why}" if why else ""), made)

    def _configure_container(self, host: LabHostSpec, k: int, sshd_pid: int) -> bool:
        """veth<k> on docker0 and up; in c<k>: lo and eth0 up, its address, the default route
        via docker0. False if all of it was already so."""
        name, veth = f"c{k}", f"veth{k}"
        subnet = self.spec.container_subnet(host.name)
        gateway = str(subnet.network_address + 1)
        address = f"{self.spec.container_address(host.name, k)}/{subnet.prefixlen}"
        link = json.loads(in_host(sshd_pid, ["ip", "-j", "link", "show", "dev", veth]).stdout)[0]
        inside = json.loads(in_host(sshd_pid, ["ip", "-n", name, "-j", "addr", "show"]).stdout)
        by_name = {i.get("ifname"): i for i in inside}
        eth0, lo = by_name.get("eth0", {}), by_name.get("lo", {})
        routes = json.loads(
            in_host(sshd_pid, ["ip", "-n", name, "-j", "route", "show", "default"]).stdout or "[]"
        )
        if (
            link.get("master") == CONTAINER_BRIDGE
            and "UP" in link.get("flags", [])
            and "UP" in lo.get("flags", [])
            and "UP" in eth0.get("flags", [])
            and address
            in {f"{a.get('local')}/{a.get('prefixlen')}" for a in eth0.get("addr_info", [])}
            and any(r.get("gateway") == gateway for r in routes)
        ):
            return False
        in_host(sshd_pid, ["ip", "link", "set", veth, "master", CONTAINER_BRIDGE, "up"])
        batch = (
            f"link set lo up\nlink set eth0 up\naddr replace {address} dev eth0\n"
            f"route replace default via {gateway} dev eth0\n"
        )
        in_host(sshd_pid, ["ip", "-n", name, "-batch", "-"], input=batch)
        return True

    def _clear_stale_container(self, key: str, rec: dict[str, Any], sshd_pid: int) -> int:
        """Stop the processes still in a container's old namespace and remove its veth end
        from the host; returns how many processes were stopped."""
        stopped = 0
        if rec.get("inode"):
            for pids in pids_in_netns({rec["inode"]: rec.get("cookie")}).values():
                terminate(pids)
                stopped += len(pids)
        # Deleting one end of a veth pair deletes both; "Cannot find device" is fine too.
        in_host(sshd_pid, ["ip", "link", "del", rec.get("veth", "")], check=False)
        return stopped

    def _configure_veth(self, ns: str, veth: str, address: str) -> bool:
        """Address and links up; also repairs what an interrupted `up` left half-done."""
        out = run(["ip", "-j", "-n", ns, "addr", "show", "dev", "eth0"]).stdout
        info = (json.loads(out) or [{}])[0]
        has_addr = any(a.get("local") == address for a in info.get("addr_info", []))
        if has_addr and "UP" in info.get("flags", []):
            return False
        prefix = self.spec.subnet.prefixlen
        run(["ip", "link", "set", veth, "master", self.spec.bridge, "up"])
        run(["ip", "-n", ns, "addr", "replace", f"{address}/{prefix}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return True

    def _write_host_files(self, host: LabHostSpec) -> Path:
        hdir = self.spec.host_dir(host.name)
        home = hdir / "home"
        (home / ".ssh").mkdir(parents=True, exist_ok=True)
        hdir.chmod(0o700)
        home.chmod(0o700)  # sshd's StrictModes checks the home it sees as /root
        (home / ".ssh").chmod(0o700)
        pub = self.spec.key_file.with_suffix(".pub").read_text()
        atomic_write(home / ".ssh" / "authorized_keys", pub, 0o600)
        self._ensure_key(hdir / "ssh_host_ed25519_key", f"{host.name}@{self.spec.name}")
        config = hdir / "sshd_config"
        atomic_write(
            config,
            SSHD_CONFIG.format(
                host=host.name,
                address=host.address,
                host_key=hdir / "ssh_host_ed25519_key",
                pid_file=hdir / "sshd.pid",
            ),
        )
        return config

    def _ensure_sshd(self, host: LabHostSpec) -> LabChange:
        config = self._write_host_files(host)
        known = self._record.get("sshd", {}).get(host.name)
        if known and _is_our_sshd(known["pid"], known["start"], config):
            return LabChange(f"sshd {host.name}", False)
        pid_file = self.spec.host_dir(host.name) / "sshd.pid"
        log_file = self.spec.host_dir(host.name) / "sshd.log"
        pid_file.unlink(missing_ok=True)
        log_file.unlink(missing_ok=True)
        home = self.spec.host_dir(host.name) / "home"
        setup = " && ".join(
            [
                f"hostname {shlex.quote(host.name)}",
                "mount -t tmpfs -o mode=0755 labctl-run /run",
                "mkdir -m 0755 /run/sshd",
                f"mount --bind {shlex.quote(str(home))} /root",
                f"exec {SSHD} -f {shlex.quote(str(config))} -E {shlex.quote(str(log_file))}",
            ]
        )
        run(
            [
                "ip",
                "netns",
                "exec",
                self.spec.netns(host.name),
                "unshare",
                "--uts",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                setup,
            ]
        )
        # sshd writes its PidFile once it listens.
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text().strip():
            log = log_file.read_text().strip().splitlines() if log_file.exists() else []
            fatal = [line for line in log if "fatal" in line or "Bind to port" in line]
            if fatal or time.monotonic() > deadline:
                why = fatal[0] if fatal else f"no {pid_file.name} within 10 s"
                raise LabError(f"sshd for {host.name} did not start: {why}")
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        self._note("sshd", host.name, pid=pid, start=process_start_time(pid), config=str(config))
        self._say(f"{host.name}: sshd pid {pid} on {host.address}")
        return LabChange(f"sshd {host.name}", True)

    def _wait_for_ssh(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for host in self.spec.hosts:
            while True:
                try:
                    with socket.create_connection((host.address, 22), timeout=1):
                        break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"{host.name}: sshd not reachable on {host.address}:22: "
                            f"{exc.strerror or exc}"
                        ) from exc
                    time.sleep(0.05)

    @staticmethod
    def _identity(ns: str) -> dict[str, Any]:
        found = netns_identity(f"/run/netns/{ns}")
        if found is None:
            raise LabError(f"namespace {ns} vanished just after it was made")
        return {"inode": found[0], "cookie": found[1]}

    def _is_ours(self, ns: str) -> bool:
        """Is the namespace named `ns` now the very one `up` made (inode, and the cookie
        that is never reused), and not this controller's own?"""
        rec = self._record.get("netns", {}).get(ns) or {}
        path = f"/run/netns/{ns}"
        try:  # two namespaces alive at once never share an inode
            inode = os.stat(path).st_ino
            if inode == os.stat("/proc/self/ns/net").st_ino:
                return False
        except OSError:
            return False
        if "inode" not in rec:
            return True  # an older labctl's record: by name, as it did
        if inode != rec["inode"]:
            return False
        if rec.get("cookie") is None:
            return True
        now = netns_identity(path)  # the same inode may be a later namespace's
        return now is not None and now[1] == rec["cookie"]

    # -- down
    def down(self, purge: bool = False) -> LabReport:
        """Remove exactly what `up` recorded; with `purge`, also the files `up` wrote."""
        self._require_root("down")
        self._record = self._load_record()
        report = LabReport(self.spec.name)
        # Containers first, while their host's sshd, and with it the mount namespace that
        # holds their /run/netns entries, is still there.
        for key, ctr in self._record.get("container", {}).items():
            report.changes.extend(self._remove_container(key, ctr))
        for host, sshd in list(self._record.get("sshd", {}).items()):
            if _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
                terminate([sshd["pid"]])
                report.changes.append(LabChange(f"sshd {host} (pid {sshd['pid']})", True))
            del self._record["sshd"][host]
            self._save_record()
        report.changes.extend(self._stop_container_leftovers())
        present = netns_list()
        for ns in [n for n in self._record.get("netns", {}) if n in present]:
            if not self._is_ours(ns):
                # Same name, another namespace (or the controller's own): not ours to touch.
                present.discard(ns)
                report.changes.append(LabChange(f"netns {ns} left: not the one up made", False))
                continue
            # Sessions and programs started over SSH live in the namespace: stop them by PID.
            rec = self._record["netns"][ns]
            leftovers = (
                pids_in_netns({rec["inode"]: rec.get("cookie")}).get(rec["inode"], [])
                if "inode" in rec
                else netns_pids(ns)  # recorded by an older labctl: by name, as it did
            )
            if leftovers:
                terminate(leftovers)
                report.changes.append(LabChange(f"{len(leftovers)} processes in {ns}", True))
        for host in list(self._record.get(CONTAINER_BRIDGE, {})):
            ns = self.spec.netns(host)
            if ns in present and self._record.get("netns", {}).get(ns) is not None:
                proc = run(["ip", "-n", ns, "link", "del", CONTAINER_BRIDGE], check=False)
                if proc.returncode == 0:
                    report.changes.append(LabChange(f"{CONTAINER_BRIDGE} {host}", True))
            del self._record[CONTAINER_BRIDGE][host]
            self._save_record()
        # Deleting a veth's root end removes both ends at once; a namespace's own teardown is
        # asynchronous, so veths go first and then nothing races the kernel.
        for kind in ("veth", "netns", "bridge"):
            for name in list(self._record.get(kind, {})):
                if remove(kind, name, present):
                    report.changes.append(LabChange(f"{kind} {name}", True))
                del self._record[kind][name]
                self._save_record()
        self.spec.record_file.unlink(missing_ok=True)
        if purge:
            self._purge_made()
        return report

    def _remove_container(self, key: str, ctr: dict[str, Any]) -> list[LabChange]:
        """Stop a container's processes (by PID) and delete its veth and namespace, inside its
        host. Needs the host's sshd: without it there is no way in to its /run/netns, and
        _stop_container_leftovers does what remains to be done."""
        sshd = self._record.get("sshd", {}).get(ctr["host"])
        if not sshd or not _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
            return []
        pid, name = int(sshd["pid"]), ctr["netns"]
        changes = []
        present = name in host_netns_list(pid)
        if present:
            out = in_host(pid, ["ip", "netns", "pids", name], check=False).stdout
            pids = [int(p) for p in out.split()]
            if pids:
                terminate(pids)
                changes.append(LabChange(f"{len(pids)} processes in {key}", True))
        in_host(pid, ["ip", "link", "del", ctr["veth"]], check=False)  # takes eth0 with it
        if present:
            in_host(pid, ["ip", "netns", "del", name])
            changes.append(LabChange(f"container {key}", True))
        return changes

    def _stop_container_leftovers(self) -> list[LabChange]:
        """After the sshd are gone: processes still in a container's network namespace.

        A container's namespace is held by its /run/netns entry in its host's mount
        namespace, and by every process in it. A process started with `ip netns exec cK`
        also holds a copy of that mount namespace, so when the host's sshd died first the
        container outlives it and `ip netns pids` can no longer name it. So look for the
        namespace itself: every process whose /proc/PID/ns/net is a recorded container's
        (inode, confirmed by the never-reused cookie), and stop those by PID. Then nothing
        holds the namespaces, and the kernel frees them with their veth pairs."""
        containers = self._record.get("container", {})
        wanted = {c["inode"]: c.get("cookie") for c in containers.values() if c.get("inode")}
        by_inode = {c["inode"]: key for key, c in containers.items() if c.get("inode")}
        changes = []
        for inode, pids in pids_in_netns(wanted).items() if wanted else ():
            terminate(pids)
            changes.append(LabChange(f"{len(pids)} processes in {by_inode[inode]}", True))
        if self._record.pop("container", None) is not None:
            self._save_record()
        return changes

    # -- status
    def status(self) -> list[LabHostStatus]:
        record = self._load_record()
        present = netns_list() if os.geteuid() == 0 else set()
        rows = []
        for host in self.spec.hosts:
            ns = self.spec.netns(host.name)
            sshd = record.get("sshd", {}).get(host.name)
            running = bool(sshd) and _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"]))
            containers = 0
            recorded = {
                c["netns"] for c in record.get("container", {}).values() if c["host"] == host.name
            }
            if running and recorded and os.geteuid() == 0:
                containers = len(recorded & host_netns_list(int(sshd["pid"])))
            port_open = False
            if running:
                try:
                    with socket.create_connection((host.address, 22), timeout=0.5):
                        port_open = True
                except OSError:
                    pass
            rows.append(
                LabHostStatus(
                    host.name,
                    host.address,
                    ns,
                    ns in present,
                    sshd["pid"] if sshd else None,
                    running,
                    port_open,
                    containers,
                )
            )
        return rows

    def sshd_pid(self, host: str) -> int | None:
        """The PID of the host's sshd if it is still the one `up` started."""
        sshd = self._load_record().get("sshd", {}).get(host)
        if sshd and _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
            return int(sshd["pid"])
        return None
