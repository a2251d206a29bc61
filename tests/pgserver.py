"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` package, a cluster of
its own in a temporary directory, listening on 127.0.0.1 at a free port and on a socket in
that directory, stopped by its PID and removed at the end. Debian's own cluster is never
touched. A server left by a test run that was killed outright (its directory names the
pytest PID) is stopped and removed by the next one (`sweep_orphans`)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER = "postgres"  # Debian's package makes this user; the server refuses to run as root
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
TMP = Path("/tmp")


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb and postgres."""
    found = [
        d / "bin"
        for d in Path("/usr/lib/postgresql").glob("*")
        if (d / "bin" / "initdb").is_file() and (d / "bin" / "postgres").is_file()
    ]
    return (
        max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        if found
        else None
    )


def sweep_orphans() -> list[Path]:
    """Servers of test runs that are gone: stopped by the PID in their postmaster.pid (if it
    is that server), their directories removed."""
    swept = []
    for directory in TMP.glob("labctl-pg-*-*"):
        owner = directory.name.split("-")[2]
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        pidfile = directory / "data" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            pid, cmdline = 0, b""
        if pid and str(directory).encode() in cmdline:  # that server, not a reused PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
        swept.append(directory)
    return swept


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    databases: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, bindir: Path) -> PgServer:
        owner = pwd.getpwnam(USER)
        # As that user, with its own groups (not root's supplementary ones); no shell, no sudo.
        as_owner: dict[str, Any] = {
            "user": owner.pw_uid,
            "group": owner.pw_gid,
            "extra_groups": os.getgrouplist(owner.pw_name, owner.pw_gid),
        }
        sweep_orphans()
        # /tmp itself, not $TMPDIR nor pytest's tmp dirs: those may be 0700 root, out of the
        # postgres user's reach.
        directory = Path(tempfile.mkdtemp(prefix=f"labctl-pg-{os.getpid()}-", dir=TMP))
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        server = cls(bindir, directory, _free_port())
        try:
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(directory / "data"), "-U", USER,
                 "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                cwd=directory, check=True, capture_output=True, timeout=120,
                stdin=subprocess.DEVNULL, **as_owner,
            )  # fmt: skip
            for attempt in range(3):  # the free port may be taken before postgres binds it
                try:
                    server._launch(as_owner)
                    break
                except RuntimeError:
                    if attempt == 2 or "already in use" not in server.log_tail():
                        raise
                    server.port = _free_port()
        except subprocess.CalledProcessError as e:
            server.stop()
            out = ((e.stdout or b"") + (e.stderr or b"")).decode(errors="replace")[-2000:]
            raise RuntimeError(f"initdb failed ({e.returncode}): {out}") from None
        except BaseException:
            server.stop()
            raise
        return server

    def _launch(self, as_owner: dict[str, Any]) -> None:
        """Starts postgres itself (no pg_ctl: Popen's PID is the server) and waits for it."""
        with open(self.directory / "server.log", "wb") as log:  # the server keeps its own fd
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.directory / "data"),
                 "-k", str(self.directory), "-h", "127.0.0.1", "-p", str(self.port),
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=100"],
                cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, **as_owner,
            )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited {self.process.returncode}: {self.log_tail()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    # Ours, not some other server that took the port while ours failed to bind.
                    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
                if row is not None and Path(row[0]) == self.directory / "data":
                    return
            except psycopg.Error:  # not up yet (or someone else's server)
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                raise RuntimeError(f"postgres not ready in {START_TIMEOUT:.0f} s: {tail}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        import psycopg
        from psycopg import sql

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.databases:
            self.databases.remove(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID, SIGKILL if it lingers; then the directory goes."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)
