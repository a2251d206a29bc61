"""The hand-written peer of benchmarks/peers.py: its workload as a person would script it.

Per host one fabric connection, hosts in a thread pool (FORKS at once), per step one
command: `mkdir -p /root/peers`; `uname -r`; for each of the two files, `sha256sum` of the
remote file, compared with the wanted content's, and only when it differs the content is
uploaded with `conn.put(io.BytesIO(...), path)` (SFTP: written in place, no temp file);
`tc qdisc show dev lo`. The template is rendered with jinja2 on the controller.
Uses fabric, paramiko and jinja2 only, nothing of labctl.

Prints one JSON object: {"hosts": {name: {"uname": ..., "qdisc": ...}}, "wrote": N}, N being
how many files it uploaded in all.

usage: handwritten_peers.py TEMPLATE KEY_FILE KNOWN_HOSTS FORKS NAME=ADDRESS...
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jinja2
import paramiko
from fabric import Config, Connection

FIXED = "fixed content\n"


def connect(address: str, key: str, known_hosts: str) -> Connection:
    conn = Connection(
        address,
        user="root",
        config=Config(ssh_config=paramiko.SSHConfig()),
        connect_kwargs={"key_filename": [key], "look_for_keys": False, "allow_agent": False},
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(known_hosts)
    return conn


def ensure_file(conn: Connection, path: str, content: str) -> int:
    """1 when the file was (re)written, 0 when it already had this content."""
    have = conn.run(f"sha256sum {path}", hide=True, warn=True, in_stream=False).stdout.split()
    if have[:1] == [hashlib.sha256(content.encode()).hexdigest()]:
        return 0
    conn.put(io.BytesIO(content.encode()), path)
    return 1


@dataclass(frozen=True)
class HostOut:
    uname: str
    qdisc: str
    wrote: int


def one(name: str, address: str, key: str, known_hosts: str, template: str) -> HostOut:
    rendered = jinja2.Template(template, keep_trailing_newline=True).render(
        inventory_hostname=name, ansible_host=address
    )
    conn = connect(address, key, known_hosts)
    try:
        conn.run("mkdir -p /root/peers", hide=True, in_stream=False)
        uname = conn.run("uname -r", hide=True, in_stream=False).stdout.strip()
        wrote = ensure_file(conn, "/root/peers/bench.conf", rendered)
        wrote += ensure_file(conn, "/root/peers/fixed.txt", FIXED)
        qdisc = conn.run("tc qdisc show dev lo", hide=True, in_stream=False).stdout.strip()
    finally:
        conn.close()
    return HostOut(uname, qdisc, wrote)


def main() -> None:
    template_file, key, known_hosts, forks, *pairs = sys.argv[1:]
    template = Path(template_file).read_text()
    hosts = [p.split("=", 1) for p in pairs]
    with ThreadPoolExecutor(max_workers=int(forks)) as pool:
        results = list(pool.map(lambda h: one(h[0], h[1], key, known_hosts, template), hosts))
    out = {
        "hosts": {
            h[0]: {"uname": r.uname, "qdisc": r.qdisc} for h, r in zip(hosts, results, strict=True)
        },
        "wrote": sum(r.wrote for r in results),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
