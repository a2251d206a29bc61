"""get_url on the namespace lab through `labctl play`: srv1 downloads from an HTTP server the
test starts in srv1's own network namespace, on its loopback (no other traffic); the server
is stopped by its PID afterwards whatever happens."""

from __future__ import annotations

import hashlib
import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.remote import ShellScript

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

WORK = "/root/labctl-test-get-url"  # srv1's own /root: the served files and the downloads
PAYLOAD = b"a release tarball, pretend\n" * 100


@pytest.fixture
def server(lab: NamespaceLab) -> Iterator[int]:
    """python3's http.server on srv1's 127.0.0.1, serving WORK/www; yields its port."""
    srv1 = lab.host("srv1")
    port = 20000 + os.getpid() % 20000
    www = f"{WORK}/www"
    pid_file = f"{WORK}/server.pid"
    pid = ""
    try:
        srv1.run(["mkdir", "-p", www, f"{WORK}/dl"], check=True)
        serve = (
            f"echo $$ > {shlex.quote(pid_file)}; exec python3 -m http.server --bind 127.0.0.1 "
            f"--directory {shlex.quote(www)} {port}"
        )
        srv1.run(
            ShellScript(f"setsid sh -c {shlex.quote(serve)} </dev/null >/dev/null 2>&1 &"),
            check=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pid = srv1.run(["cat", pid_file]).stdout.strip()
            probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
            if pid and srv1.run(["bash", "-c", probe]).ok:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"http.server on srv1:{port} did not start")
        yield port
    finally:
        if pid:
            srv1.run(["kill", pid])
        srv1.run(["rm", "-rf", WORK])


def test_get_url_downloads_once(lab: NamespaceLab, tmp_path: Path, server: int) -> None:
    srv1 = lab.host("srv1")
    local = tmp_path / "pkg.tar.gz"
    local.write_bytes(PAYLOAD)
    srv1.put(str(local), f"{WORK}/www/pkg.tar.gz")
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: with a checksum
              get_url:
                url: http://127.0.0.1:{server}/pkg.tar.gz
                dest: {WORK}/pkg.tar.gz
                checksum: "sha256:{digest}"
                mode: "0640"
            - name: into a directory, no checksum
              get_url: {{url: "http://127.0.0.1:{server}/pkg.tar.gz", dest: {WORK}/dl}}
        """,
    )
    rc, doc, err = play(lab, book, "--check")
    assert rc == 0, err
    assert changed(doc) == {"srv1": 2}
    assert srv1.run(["test", "-e", f"{WORK}/pkg.tar.gz"]).exit_status == 1

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 2}
    got = srv1.run(["sha256sum", f"{WORK}/pkg.tar.gz"]).stdout.split()[0]
    assert got == digest
    assert srv1.run(["stat", "-c", "%a", f"{WORK}/pkg.tar.gz"]).stdout.strip() == "640"
    assert srv1.run(["cmp", f"{WORK}/dl/pkg.tar.gz", f"{WORK}/www/pkg.tar.gz"]).ok
    first = doc["results"][0]["output"]
    assert first["status_code"] == 200
    assert first["checksum_src"] == hashlib.sha1(PAYLOAD).hexdigest()
    assert first["dest"] == f"{WORK}/pkg.tar.gz"

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 0}


def test_a_wrong_checksum_fails_and_leaves_nothing(
    lab: NamespaceLab, tmp_path: Path, server: int
) -> None:
    srv1 = lab.host("srv1")
    srv1.run(["sh", "-c", f"echo hi > {WORK}/www/hi.txt"], check=True)
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: bad sum
              get_url:
                url: http://127.0.0.1:{server}/hi.txt
                dest: {WORK}/hi.txt
                checksum: "sha1:{"0" * 40}"
              ignore_errors: true
            - name: not found
              get_url: {{url: "http://127.0.0.1:{server}/nothing", dest: {WORK}/nothing}}
              ignore_errors: true
        """,
    )
    rc, doc, err = play(lab, book)
    assert rc == 0, err  # both failures ignored
    bad, missing = doc["results"]
    assert bad["status"] == missing["status"] == "failed"
    assert "did not match" in bad["msg"]
    assert "404" in missing["msg"] or "error" in missing["msg"].lower(), missing["msg"]
    assert srv1.run(["ls", WORK]).stdout.split() == ["dl", "server.pid", "www"]
