"""A real PostgreSQL server for the tests of the PostgreSQL run store (Debian's ``postgresql``).

Its binaries are found on PATH or in ``/usr/lib/postgresql/VERSION/bin`` (where Debian puts
them). PostgreSQL refuses to run as root, so under root (CI) the cluster is made and run as the
``postgres`` user (else ``nobody``) through ``runuser``, in a folder of its own under the system
temp folder. It listens on a free loopback port, trusts local connections, and is stopped (and
its folder deleted) at the end of the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from orchestrator.evals.bench_server import free_port

__all__ = ["PgServer", "pg_binary"]


def pg_binary(name: str) -> str:
    """The path of a PostgreSQL program (``initdb``, ``pg_ctl``)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for folder in reversed(versions):
        if (folder / name).is_file():
            return str(folder / name)
    raise RuntimeError(
        f"PostgreSQL's {name} is not installed: run `make system-test` "
        "(or apt-get install postgresql)"
    )


class PgServer:
    """One PostgreSQL cluster in a temporary folder; :meth:`database` makes a fresh database."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres" if _has_user("postgres") else "nobody"
            record = pwd.getpwnam(self.user)
            os.chown(self.folder, record.pw_uid, record.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        done = subprocess.run(
            prefix + list(command), capture_output=True, text=True, timeout=120, cwd=self.folder
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{command[0]} failed:\n{done.stdout}{done.stderr}{log}")

    def start(self) -> PgServer:
        self._run(
            pg_binary("initdb"), "-D", str(self.data), "-U", "orch", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c max_connections=200"
        )
        self._run(
            pg_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    @property
    def admin_url(self) -> str:
        return f"postgresql://orch@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://orch@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
