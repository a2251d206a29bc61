"""packages: Debian packages present or absent, through apt.

One read-only `dpkg-query` tells which of the named packages are installed; the plan
installs (or removes) exactly the others, so a second run changes nothing.

The namespace lab's hosts share this machine's /var/lib/dpkg: parallel hosts wait for
dpkg's lock (`DPkg::Lock::Timeout`) instead of failing on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.actions.base import Action, ActionFailed, ActionResult, Plan, Run, Step, TaskContext
from labctl.remote import CommandFailed

STATES = ("present", "absent")
LOCK_TIMEOUT = 300  # seconds apt waits for dpkg's lock held by another host or apt run
UNLOCATABLE = "Unable to locate package"

# Debian policy 5.6.1 (names), 5.6.12 (versions: [epoch:]upstream[-revision]); arch as dpkg.
_SPEC = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9+.-]+)"
    r"(?::(?P<arch>[a-z0-9][a-z0-9-]*))?"
    r"(?:=(?P<version>[0-9][A-Za-z0-9.+~:-]*))?$"
)

# Package and Architecture match `name:arch` requests, Version matches `name=version`:
# the bare `${Package}\t${db:Status-Abbrev}` form could not tell those apart.
QUERY_FORMAT = r"${Package}\t${Architecture}\t${db:Status-Abbrev}\t${Version}\n"


@dataclass(frozen=True)
class PackageSpec:
    """One requested package: `name[:arch][=version]`, as the user wrote it in `text`."""

    text: str
    name: str
    arch: str | None = None
    version: str | None = None

    @property
    def query(self) -> str:
        """The name dpkg-query and `apt-get remove` take (no version)."""
        return f"{self.name}:{self.arch}" if self.arch else self.name


def parse_spec(text: str) -> PackageSpec:
    """Check a package name before it reaches a host; ValueError names the bad one."""
    m = _SPEC.match(text)
    if not m:
        raise ValueError(
            f"bad package name {text!r}: Debian names are lowercase [a-z0-9][a-z0-9+.-]+, "
            "optionally followed by :arch and =version"
        )
    return PackageSpec(text, m["name"], m["arch"], m["version"])


@dataclass(frozen=True)
class InstalledPackage:
    """One line of dpkg-query's output."""

    name: str
    arch: str
    status: str  # db:Status-Abbrev, e.g. "ii " or "rc "
    version: str

    @property
    def installed(self) -> bool:
        # Second letter: i installed, W/t triggers awaited/pending (installed and usable).
        # n not installed, c config-files only; U/F/H half-done states that apt must finish.
        return len(self.status) >= 2 and self.status[1] in "iWt"

    @property
    def on_disk(self) -> bool:
        """Anything but "not installed" / "config files only": `remove` has work to do."""
        return len(self.status) >= 2 and self.status[1] not in "nc"


def parse_dpkg_query(text: str) -> list[InstalledPackage]:
    """Output of `dpkg-query -W -f=QUERY_FORMAT`. Names dpkg does not know print no line."""
    found = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ValueError(f"unexpected dpkg-query line {line!r}")
        found.append(InstalledPackage(*fields))
    return found


def _matches(spec: PackageSpec, pkg: InstalledPackage) -> bool:
    if pkg.name != spec.name:
        return False
    if spec.arch and pkg.arch not in (spec.arch, "all"):
        return False
    return spec.version is None or pkg.version == spec.version


def split_installed(
    specs: Sequence[PackageSpec], found: Sequence[InstalledPackage], state: str = "present"
) -> tuple[list[PackageSpec], list[PackageSpec]]:
    """(installed, missing) among `specs`. For `absent`, a half-installed package counts as
    installed (there is something to remove); for `present` it counts as missing."""
    installed: list[PackageSpec] = []
    missing: list[PackageSpec] = []
    for spec in specs:
        there = any(
            _matches(spec, pkg) and (pkg.installed if state == "present" else pkg.on_disk)
            for pkg in found
        )
        (installed if there else missing).append(spec)
    return installed, missing


def _apt(*args: str) -> list[str]:
    # `env` because the variable must reach apt-get and its maintainer scripts (debconf),
    # and the command is an argument list, not shell text.
    return [
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-o",
        f"DPkg::Lock::Timeout={LOCK_TIMEOUT}",
        *args,
    ]


def update_command() -> list[str]:
    return _apt("update")


def install_command(specs: Sequence[PackageSpec]) -> list[str]:
    return _apt("install", "-y", "--no-install-recommends", *(s.text for s in specs))


def remove_command(specs: Sequence[PackageSpec]) -> list[str]:
    return _apt("remove", "-y", *(s.query for s in specs))


UPDATE_LABEL = "apt-get update"


def apt_label(verb: str, specs: Sequence[PackageSpec], shown: int = 3) -> str:
    """What the user sees while apt runs: `apt-get install gcc make bc (+4 more)`."""
    names = " ".join(s.text for s in specs[:shown])
    more = f" (+{len(specs) - shown} more)" if len(specs) > shown else ""
    return f"apt-get {verb} {names}{more}"


@dataclass(frozen=True)
class PackagesArgs:
    names: tuple[str, ...]
    state: str = "present"
    update_cache: bool = False

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be present or absent, not {self.state!r}")
        if not self.names:
            raise ValueError("names must name at least one package")
        for text in self.names:
            parse_spec(text)

    @property
    def specs(self) -> list[PackageSpec]:
        return [parse_spec(t) for t in dict.fromkeys(self.names)]  # in order, once each


class PackagesAction(Action):
    name = "packages"
    Args = PackagesArgs

    def plan(self, ctx: TaskContext, args: PackagesArgs) -> Plan:
        specs = args.specs
        query = ["dpkg-query", "-W", f"-f={QUERY_FORMAT}", *(s.query for s in specs)]
        res = ctx.conn.run(query)
        # Exit 1 = some name is unknown to dpkg: that package is simply not installed.
        if res.exit_status == 127:
            raise ActionFailed(
                f"{ctx.conn.host.name}: packages: dpkg-query not found "
                "(this action supports Debian/apt hosts only)",
                res,
            )
        if res.exit_status not in (0, 1):
            raise CommandFailed(res)
        installed, missing = split_installed(specs, parse_dpkg_query(res.stdout), args.state)
        output = {"installed": [s.text for s in installed], "missing": [s.text for s in missing]}
        steps: list[Step] = []
        if args.state == "present" and missing:
            if args.update_cache:
                steps.append(Run(update_command(), label=UPDATE_LABEL))
            steps.append(Run(install_command(missing), label=apt_label("install", missing)))
            changes = [f"install {s.text}" for s in missing]
        elif args.state == "absent" and installed:
            steps.append(Run(remove_command(installed), label=apt_label("remove", installed)))
            changes = [f"remove {s.text}" for s in installed]
        else:
            changes = []
        return Plan(steps, changes, output=output)

    def apply(self, ctx: TaskContext, args: PackagesArgs, plan: Plan) -> ActionResult:
        result = super().apply(ctx, args, plan)
        stale_cache = UNLOCATABLE in str(result.output.get("stderr", ""))
        if result.failed and stale_cache and not args.update_cache:
            # The package lists predate the package (or were never fetched, as on a fresh
            # container): refresh them once and try again, as a user would.
            retry = Plan(
                [Run(update_command(), label=UPDATE_LABEL), *plan.steps],
                plan.changes,
                plan.diff,
                output=plan.output,
            )
            return super().apply(ctx, args, retry)
        return result
