"""Kernel modules on a host, as facts and shell snippets to read them: a module's name in
sysfs, its identity (GNU build-id, else srcversion: docs/netmap.md, "Module identity"), its
vermagic against a release, kernel lockdown, and why an insmod was refused."""

from __future__ import annotations

import re
import shlex


def sysfs_name(module: str) -> str:
    """/sys/module spells a module's name with underscores, whatever its file name says."""
    return module.replace("-", "_")


def loaded_module_id(module: str) -> str:
    """Shell text printing a loaded module's identity: `build-id:<hex>` from its GNU build-id
    note in sysfs, else `srcversion:<x>`, else nothing. Debian's modules carry no srcversion
    (no MODULE_VERSION), so srcversion alone would call every e1000e.ko the same module."""
    d = shlex.quote(f"/sys/module/{sysfs_name(module)}")
    return (
        f'$(b=$(od -An -tx1 -v -j 16 {d}/notes/.note.gnu.build-id 2>/dev/null | tr -d " \\n"); '
        f'if [ -n "$b" ]; then echo "build-id:$b"; '
        f'else s=$(cat {d}/srcversion 2>/dev/null); [ -n "$s" ] && echo "srcversion:$s"; fi)'
    )


def file_module_id(ko: str) -> str:
    """Shell text printing a .ko file's identity, as `loaded_module_id` spells it (`ko` is
    shell text: a quoted path, or a command substitution)."""
    return (
        f'$(b=$(readelf -n {ko} 2>/dev/null | sed -n "s/.*Build ID: *//p" | head -n 1); '
        f'if [ -n "$b" ]; then echo "build-id:$b"; '
        f"else s=$(modinfo -F srcversion {ko} 2>/dev/null); "
        '[ -n "$s" ] && echo "srcversion:$s"; fi)'
    )


def same_module(a: str | None, b: str | None) -> bool:
    """Two identities name the same module only when both are known and equal."""
    return bool(a) and a == b


def vermagic_matches(vermagic: str, release: str) -> bool:
    """vermagic is `<release> SMP preempt …`: its first word must be the release exactly
    (a prefix is not enough: 6.1.0-2 is not 6.1.0-28-amd64)."""
    words = vermagic.split()
    return bool(words) and words[0] == release


def lockdown_mode(lockdown: str | None) -> str | None:
    """`none [integrity] confidentiality` → "integrity"; None when not locked down."""
    found = re.search(r"\[(\w+)\]", lockdown or "")
    mode = found.group(1) if found else None
    return mode if mode in ("integrity", "confidentiality") else None


def record_modules_script(path: str) -> str:
    """sh: the names of the modules loaded now, sorted, written to `path` (whole or not at
    all: through `path`.tmp)."""
    q = shlex.quote
    return (
        f"cut -d' ' -f1 /proc/modules | LC_ALL=C sort > {q(path + '.tmp')} && "
        f"mv {q(path + '.tmp')} {q(path)}"
    )


def explain_insmod_failure(host: str, ko: str, output: str, lockdown: str | None) -> str:
    """One line for a refused insmod, naming Secure Boot when that is why."""
    mode = lockdown_mode(lockdown)
    first = next((line.strip() for line in output.splitlines() if line.strip()), "failed")
    if "Key was rejected by service" in output or "Required key not available" in output:
        why = f"kernel lockdown [{mode}], Secure Boot" if mode else "module signatures enforced"
        return (
            f"{host}: insmod {ko} refused: the module is not signed by a key the kernel "
            f"trusts ({why}): sign it with an enrolled key or turn Secure Boot off"
        )
    if mode and "Operation not permitted" in output:
        return (
            f"{host}: insmod {ko} refused by kernel lockdown [{mode}] (Secure Boot): "
            "unsigned modules cannot be loaded"
        )
    return f"{host}: insmod {ko}: {first}"
