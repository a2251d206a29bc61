"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` package, a cluster of
its own in a temporary directory, listening on 127.0.0.1 at a free port and on a socket in
that directory, stopped by its PID and removed at the end. Debian's own cluster is never
touched. A server left by a test run that was killed outright (its directory names the
pytest PID) is stopped and removed by the next one (`sweep_orphans`)."""

from __future__ import annotations

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

USER = "postgres"  # Debian's package makes this user; the server refuses to run as root
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


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
    for directory in Path(tempfile.gettempdir()).glob("labctl-pg-*-*"):
        owner = directory.name.split("-")[2]
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        pidfile = directory / "data" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            pid, cmdline = 0, b""
        if pid and str(directory).encode() in cmdline:
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
        sweep_orphans()
        directory = Path(tempfile.mkdtemp(prefix=f"labctl-pg-{os.getpid()}-"))
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        server = cls(bindir, directory, _free_port())
        try:
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(directory / "data"), "-U", USER,
                 "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                user=owner.pw_uid, group=owner.pw_gid, cwd=directory, check=True,
                capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            log = open(directory / "server.log", "wb")  # noqa: SIM115 (the server keeps it)
            server.process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(directory / "data"),
                 "-k", str(directory), "-h", "127.0.0.1", "-p", str(server.port),
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=100"],
                user=owner.pw_uid, group=owner.pw_gid, cwd=directory, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            log.close()
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited {self.process.returncode}: {self.log_tail()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres not ready in {START_TIMEOUT:.0f} s: {self.log_tail()}"
                    ) from None
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
