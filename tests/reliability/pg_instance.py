"""A dedicated PostgreSQL cluster for one test, so a test can restart it without touching the shared
server other tests use.

Debian's server binaries (``/usr/lib/postgresql/<newest>/bin``, or ``$PG_BINDIR``), a fresh cluster
in a temp dir, one free loopback port chosen once, so ``stop()``/``start()``/``restart()`` bring back
the same server with its data at the same address. As root, the server runs as the ``postgres`` OS
user (PostgreSQL refuses to run as root), as scripts/stack/postgres.sh does::

    async with PgInstance() as pg:
        ... pg.url ...          # postgresql://postgres@127.0.0.1:<port>/postgres (trust, loopback only)
        await pg.restart()      # fast shutdown: every connection is cut
        await pg.restart(mode="immediate")  # a crash: no checkpoint, recovery on start
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tiktok_pipeline.local import free_port

OS_USER = "postgres"


def pg_bindir() -> Path:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)")
    return found[-1].parent


class PgInstance:
    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self.bin = pg_bindir()
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # Not under pytest's tmp dirs: those are 0700 root, and the server user must reach its data.
        self.dir = Path(tempfile.mkdtemp(prefix="tiktok-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._timeout = start_timeout
        self._as_root = os.geteuid() == 0
        self.restarts = 0

    def _run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=True, stdin=subprocess.DEVNULL
        )

    def _initdb(self) -> None:
        if self._as_root:
            shutil.chown(self.dir, OS_USER)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--auth=trust")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n".join(
                    [
                        "",
                        "listen_addresses = '127.0.0.1'",
                        f"port = {self.port}",
                        f"unix_socket_directories = '{self.dir}'",
                        "max_connections = 200",
                        # Throwaway data: the faults under test are restarts, not lost disks.
                        "fsync = off",
                        "full_page_writes = off",
                        "log_min_messages = warning",
                        "",
                    ]
                )
            )

    def _start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(self._timeout)), "start"
        )

    def _stop(self, mode: str) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    async def stop(self, mode: str = "fast") -> None:
        """``fast``: connections are terminated, a clean checkpoint; ``immediate``: a crash."""
        await asyncio.to_thread(self._stop, mode)

    async def restart(self, mode: str = "fast") -> None:
        await self.stop(mode)
        await self.start()
        self.restarts += 1

    async def __aenter__(self) -> PgInstance:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
