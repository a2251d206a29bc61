"""The peer for benchmarks/play_noop.py: the same 5 idempotency checks, written by hand.

Per host, one fabric connection; per task, one command that reads the state, compared
with what is wanted; nothing is changed when all is in place (the benchmark's case).
Uses fabric, paramiko and jinja2 only, nothing of labctl.

usage: handwritten_noop.py KEY_FILE KNOWN_HOSTS NAME=ADDRESS...
"""

import hashlib
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor

import jinja2
import paramiko
from fabric import Config, Connection

TEMPLATE = "# {{ inventory_hostname }}\nlisten = {{ ansible_host | default('0.0.0.0') }}\n"


def stat(path: str) -> str:
    p = shlex.quote(path)
    return (
        f"if [ -e {p} ]; then stat -c '%F|%a|%U|%G' {p}; "
        f"if [ -f {p} ]; then sha256sum {p}; fi; else echo absent; fi"
    )


def check(conn: Connection, path: str, kind: str, mode: str | None, content: str | None) -> bool:
    out = conn.run(stat(path), hide=True, in_stream=False).stdout.split("\n")
    if out[0] == "absent":
        return False
    ftype, fmode, _, _ = out[0].split("|")
    if mode and fmode != mode:
        return False
    if content is not None:
        return out[1].split()[0] == hashlib.sha256(content.encode()).hexdigest()
    return kind in ftype


def one(name: str, address: str, key: str, known_hosts: str) -> int:
    conn = Connection(
        address,
        user="root",
        config=Config(ssh_config=paramiko.SSHConfig()),
        connect_kwargs={"key_filename": [key], "look_for_keys": False, "allow_agent": False},
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(known_hosts)
    rendered = jinja2.Template(TEMPLATE, keep_trailing_newline=True).render(
        inventory_hostname=name, ansible_host=address
    )
    try:
        ok = [
            check(conn, "/root/bench", "directory", "755", None),
            check(conn, "/root/bench/fixed.txt", "file", "644", "fixed content\n"),
            check(conn, "/root/bench/bench.conf", "file", None, rendered),
            conn.run("test -e /root/bench/made", hide=True, warn=True, in_stream=False).exited == 0,
            check(conn, "/root/bench/marker", "file", None, None),
        ]
    finally:
        conn.close()
    return sum(not x for x in ok)


def main() -> None:
    key, known_hosts, *pairs = sys.argv[1:]
    hosts = [p.split("=", 1) for p in pairs]
    with ThreadPoolExecutor(max_workers=32) as pool:
        would_change = list(pool.map(lambda h: one(h[0], h[1], key, known_hosts), hosts))
    if any(would_change):
        raise SystemExit(f"not a no-op: {would_change}")
    print(f"{len(hosts)} hosts: 0 changed")


if __name__ == "__main__":
    main()
