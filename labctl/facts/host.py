"""Facts about a host: one command and one pure parser each, gathered in one round trip.

Every fact's command runs in one remote shell script, framed by marker lines, so a host's
facts cost one SSH exec (the round trip dominates: ~1 ms of work vs ~5 ms per exec). The
parsers are pure functions of captured text, unit-tested on real output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl.errors import LabctlError
from labctl.remote import CommandFailed, Connections, HostConnection, ShellScript

MARK = "@@labctl"


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str | None
    mtu: int | None
    state: str | None
    addresses: tuple[str, ...]  # CIDR notation
    master: str | None = None
    driver: str | None = None
    driver_version: str | None = None
    firmware: str | None = None
    bus_info: str | None = None
    root_qdisc: str | None = None


@dataclass(frozen=True)
class NetmapFacts:
    """netmap on a host: where it can run, whether it runs, what provisioning put there."""

    status: str  # "loaded", "not loaded", or "unavailable: <why>"
    loaded: bool  # /sys/module/netmap exists
    device: bool  # /dev/netmap exists
    source: str | None  # the installed build's source: "git <url> <commit>" or a hash
    admode: int | None  # 0 native or generic, 1 native only, 2 generic only
    native_drivers: tuple[str, ...] = ()  # loaded drivers built against netmap (its holders)
    build: str | None = None  # the installed build's key
    patches: str | None = None  # its drivers' patches, "e1000e:vanilla--e1000e--…"

    def mode(self, driver: str | None) -> str | None:
        """How netmap would open an interface driven by `driver`: native, generic, or None
        when netmap is not loaded. admode 2 forces generic; 1 refuses what is not native."""
        if not self.loaded:
            return None
        native = driver is not None and driver in self.native_drivers
        if self.admode == 2:
            return "generic"
        if native:
            return "native"
        return "none (admode 1: native only)" if self.admode == 1 else "generic"


@dataclass(frozen=True)
class HostFacts:
    host: str
    hostname: str | None
    kernel_release: str | None
    arch: str | None
    distro: str | None
    distro_id: str | None
    distro_version: str | None
    cpus: int | None
    cpu_model: str | None
    mem_total_mib: int | None
    interfaces: tuple[Interface, ...]
    ssh_interface: str | None  # the interface carrying the SSH session: never cut it
    ssh_address: str | None
    controller_address: str | None
    modules_supported: bool  # /proc/modules exists: the kernel can load modules
    lockdown: str | None  # e.g. "[none] integrity confidentiality"
    somaxconn: int | None
    default_qdisc: str | None
    gcc_version: str | None
    tc_version: str | None
    errors: tuple[str, ...] = field(default=())  # facts whose command failed, with why
    netmap: NetmapFacts | None = None
    virtualization: str | None = None  # systemd-detect-virt: qemu, kvm, docker, none

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- commands

# Each command is fixed shell text (no user input reaches it).
FACT_COMMANDS: Mapping[str, str] = {
    "hostname": "hostname",
    "uname": "uname -r; uname -m",
    "os_release": "cat /etc/os-release",
    "cpu": "nproc; grep -m1 '^model name' /proc/cpuinfo",
    "meminfo": "grep '^MemTotal:' /proc/meminfo",
    "ip_addr": "ip -j addr show",
    # ethtool where present; sysfs knows the driver of a device-backed NIC without it.
    "drivers": (
        'for d in /sys/class/net/*; do n=${d##*/}; echo "@if $n"; '
        'ethtool -i "$n" 2>/dev/null || { [ -e "$d/device/driver" ] && '
        'echo "driver: $(basename "$(readlink "$d/device/driver")")"; }; done; true'
    ),
    "ssh_connection": 'echo "$SSH_CONNECTION"',
    "modules": "if [ -e /proc/modules ]; then echo yes; else echo no; fi; "
    "cat /sys/kernel/security/lockdown 2>/dev/null; true",
    "qdiscs": "tc -j qdisc show",
    "sysctls": "for k in net/core/somaxconn net/core/default_qdisc; do "
    'printf "%s=%s\\n" "$k" "$(cat /proc/sys/$k)"; done',
    "netmap": (
        "[ -d /sys/module/netmap ] && echo loaded=yes; [ -c /dev/netmap ] && echo device=yes; "
        "f=/root/labctl/netmap/current/build.txt; "
        '[ -f "$f" ] && sed -n "s/^key=/build=/p; s/^source=/source=/p; s/^patches=/patches=/p"'
        ' "$f"; '
        "a=/sys/module/netmap/parameters/admode; "
        '[ -r "$a" ] && printf "admode=%s\\n" "$(cat "$a")"; '
        'printf "holders=%s\\n" "$(ls /sys/module/netmap/holders 2>/dev/null | tr "\\n" " ")"; '
        "true"
    ),
    "virtualization": "systemd-detect-virt 2>/dev/null || "
    '{ v=$(cat /sys/class/dmi/id/sys_vendor 2>/dev/null); [ "$v" = QEMU ] && echo qemu; }; true',
    "tools": 'printf "gcc=%s\\n" "$(gcc -dumpfullversion 2>/dev/null)"; '
    'printf "tc=%s\\n" "$(tc -V 2>/dev/null)"',
}


def facts_script(names: Mapping[str, str] = FACT_COMMANDS) -> str:
    """One shell script running every fact command between marker lines with its exit status."""
    parts = []
    for name, command in names.items():
        parts.append(
            f"echo '{MARK} begin {name}'; ( {command} ) 2>/dev/null; echo \"{MARK} end {name} $?\""
        )
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class Section:
    output: str
    exit_status: int


def split_sections(stdout: str) -> dict[str, Section]:
    """Cut the combined output back into one `Section` per fact."""
    sections: dict[str, Section] = {}
    current: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(f"{MARK} begin "):
            current, lines = line.split()[2], []
        elif line.startswith(f"{MARK} end ") and current is not None:
            rc = line.split()[3]
            sections[current] = Section("\n".join(lines) + ("\n" if lines else ""), int(rc))
            current = None
        elif current is not None:
            lines.append(line)
    return sections


# ---------------------------------------------------------------------------- parsers


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def parse_key_values(text: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found:
            out[key.strip()] = value.strip()
    return out


def parse_ethtool_blocks(text: str) -> dict[str, dict[str, str]]:
    """The `drivers` section: `@if NAME` lines, each followed by `ethtool -i` fields."""
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("@if "):
            current = blocks.setdefault(line[4:].strip(), {})
        elif current is not None:
            key, found, value = line.partition(":")
            if found:
                current[key.strip()] = value.strip()
    return blocks


def parse_root_qdiscs(text: str) -> dict[str, str]:
    """`tc -j qdisc show` → {device: kind of its root qdisc}."""
    roots: dict[str, str] = {}
    for q in json.loads(text or "[]"):
        if q.get("root") and "dev" in q:
            roots[q["dev"]] = q.get("kind", "")
    return roots


def parse_interfaces(
    ip_addr_json: str,
    ethtool: Mapping[str, Mapping[str, str]],
    root_qdiscs: Mapping[str, str],
) -> tuple[Interface, ...]:
    interfaces = []
    for link in json.loads(ip_addr_json or "[]"):
        name = link.get("ifname", "")
        drv = ethtool.get(name, {})
        addrs = tuple(
            f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if "local" in a
        )
        interfaces.append(
            Interface(
                name=name,
                mac=link.get("address"),
                mtu=link.get("mtu"),
                state=link.get("operstate"),
                addresses=addrs,
                master=link.get("master"),
                driver=drv.get("driver") or None,
                driver_version=drv.get("version") or None,
                firmware=drv.get("firmware-version") or None,
                bus_info=drv.get("bus-info") or None,
                root_qdisc=root_qdiscs.get(name),
            )
        )
    return tuple(interfaces)


def ssh_endpoint(
    ssh_connection: str, interfaces: tuple[Interface, ...]
) -> tuple[str | None, str | None, str | None]:
    """$SSH_CONNECTION ("client port server port") → (interface, server address, client)."""
    fields = ssh_connection.split()
    if len(fields) != 4:
        return None, None, None
    client, server = fields[0], fields[2]
    for iface in interfaces:
        if any(a.split("/")[0] == server for a in iface.addresses):
            return iface.name, server, client
    return None, server, client


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def parse_host_facts(host: str, stdout: str) -> HostFacts:
    """All of a host's facts from the combined script's output."""
    sections = split_sections(stdout)
    errors = []

    def out(name: str) -> str:
        sec = sections.get(name)
        if sec is None:
            errors.append(f"{name}: no output")
            return ""
        if sec.exit_status != 0:
            errors.append(f"{name}: exit status {sec.exit_status}")
        return sec.output

    def parsed(name: str, parser: Callable[[str], Any], default: Any) -> Any:
        text = out(name)
        try:
            return parser(text)
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"{name}: unparsable output ({exc})")
            return default

    uname = out("uname").split()
    osr = parse_os_release(out("os_release"))
    cpu_lines = out("cpu").splitlines()
    mem = out("meminfo").split()
    qdiscs = parsed("qdiscs", parse_root_qdiscs, {})
    ethtool = parse_ethtool_blocks(out("drivers"))
    interfaces = parsed("ip_addr", lambda t: parse_interfaces(t, ethtool, qdiscs), ())
    ssh_if, ssh_addr, controller = ssh_endpoint(out("ssh_connection").strip(), interfaces)
    modules = out("modules").splitlines()
    sysctls = parse_key_values(out("sysctls"))
    tools = parse_key_values(out("tools"))
    modules_supported = bool(modules) and modules[0] == "yes"
    lockdown = modules[1] if len(modules) > 1 else None
    return HostFacts(
        host=host,
        hostname=out("hostname").strip() or None,
        kernel_release=uname[0] if uname else None,
        arch=uname[1] if len(uname) > 1 else None,
        distro=osr.get("PRETTY_NAME"),
        distro_id=osr.get("ID"),
        distro_version=osr.get("VERSION_ID"),
        cpus=_int_or_none(cpu_lines[0]) if cpu_lines else None,
        cpu_model=cpu_lines[1].partition(":")[2].strip() if len(cpu_lines) > 1 else None,
        mem_total_mib=(_int_or_none(mem[1]) or 0) // 1024 if len(mem) > 1 else None,
        interfaces=interfaces,
        ssh_interface=ssh_if,
        ssh_address=ssh_addr,
        controller_address=controller,
        modules_supported=modules_supported,
        lockdown=lockdown,
        somaxconn=_int_or_none(sysctls.get("net/core/somaxconn")),
        default_qdisc=sysctls.get("net/core/default_qdisc") or None,
        gcc_version=tools.get("gcc") or None,
        tc_version=tools.get("tc") or None,
        errors=tuple(errors),
        netmap=parse_netmap(out("netmap"), modules_supported, lockdown),
        virtualization=out("virtualization").strip() or None,
    )


def parse_netmap(text: str, modules_supported: bool, lockdown: str | None) -> NetmapFacts:
    values = parse_key_values(text)
    loaded = values.get("loaded") == "yes"
    if loaded:
        status = "loaded"
    elif not modules_supported:
        status = "unavailable: kernel without module support"
    elif lockdown and not lockdown.startswith("[none]"):
        status = f"unavailable: kernel lockdown {lockdown.split('[')[-1].split(']')[0]}"
    else:
        status = "not loaded"
    return NetmapFacts(
        status=status,
        loaded=loaded,
        device=values.get("device") == "yes",
        source=values.get("source") or None,
        admode=_int_or_none(values.get("admode")),
        native_drivers=tuple(sorted(values.get("holders", "").split())),
        build=values.get("build") or None,
        patches=values.get("patches") or None,
    )


def gather_all(conns: Connections) -> dict[str, HostFacts]:
    """Every host's facts; the first host that fails ends it with its one-line reason."""
    facts: dict[str, HostFacts] = {}
    for outcome in conns.run_on_hosts(gather_facts):
        if outcome.value is None:
            raise outcome.error or LabctlError(f"{outcome.host}: no facts")
        facts[outcome.host] = outcome.value
    return facts


def gather_facts(conn: HostConnection, timeout: float = 30.0) -> HostFacts:
    """Gather every fact of one host in one SSH exec."""
    # Facts need no root; without sudo, $SSH_CONNECTION (the SSH interface) stays visible.
    result = conn.run(ShellScript(facts_script()), timeout=timeout, become=False)
    facts = parse_host_facts(conn.host.name, result.stdout)
    if not result.ok or facts.kernel_release is None:
        raise CommandFailed(result)
    return facts


# ---------------------------------------------------------------------------- kernel headers


def installed_header_releases(listing: str) -> list[str]:
    """`ls /usr/src` → the kernel releases headers are installed for, sorted.

    Debian ships `linux-headers-<rel>` plus a shared `linux-headers-<abi>-common[-rt]`;
    Ubuntu's shared part is `linux-headers-<abi>` beside `linux-headers-<abi>-generic`.
    Neither shared part is a release a kernel reports.
    """
    names = {line.strip().rstrip("/") for line in listing.split()}
    found = {n[len("linux-headers-") :] for n in names if n.startswith("linux-headers-")}
    found = {r for r in found if r and not re.search(r"-common(-rt)?$", r)}
    return sorted(r for r in found if not any(o.startswith(r + "-") for o in found))
