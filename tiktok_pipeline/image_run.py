"""Run the pipeline's processes from the container image, as they are deployed: each in a working
container of its own (``buildah from IMAGE``), started with ``buildah run --isolation chroot`` on the
host network (so it reaches the local stack on 127.0.0.1), as uid 10001.

The pipeline's work directory is mounted at ``/tmp/pipeline`` (the sandbox's config and data); the
variables go in through a file there (mode 0600), so secrets never appear on a command line. Each
container's files are listed before and after the run, to show the process wrote nothing outside /tmp.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tiktok_pipeline.local import ProcessHandle

APP_UID = 10001
MOUNT_AT = PurePosixPath("/tmp/pipeline")  # noqa: S108 - the path inside the container
# Where a process may write: /tmp. Outside it, buildah itself puts these while a command runs.
WRITABLE = ("tmp/",)
MANAGED_BY_BUILDAH = (
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
    "run/.containerenv",
    "proc/",
    "sys/",
    "dev/",
)

Snapshot = dict[str, tuple[int, int, int, int]]


async def buildah(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "buildah", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            f"buildah {' '.join(args[:2])} failed: {err.decode(errors='replace').strip()[-500:]}"
        )
    return out.decode().strip()


def snapshot(root: Path) -> Snapshot:
    """Every path of a container's root file system (but /tmp and what buildah manages): mode, size,
    mtime, owner. Two snapshots that differ show a write."""
    files: Snapshot = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory) / name
            rel = path.relative_to(root).as_posix()
            if is_exempt(rel):
                continue
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):  # a directory's mtime moves when buildah adds /run/.containerenv;
                files[rel] = (st.st_mode, 0, 0, st.st_uid)  # what a process creates in it shows on its own
            else:
                files[rel] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid)
    return files


def is_exempt(rel: str) -> bool:
    """``rel`` (relative to the root) is in /tmp or managed by buildah: "dir/" entries cover a tree."""
    return any(
        (rel == p[:-1] or rel.startswith(p)) if p.endswith("/") else rel == p
        for p in WRITABLE + MANAGED_BY_BUILDAH
    )


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What was created, changed or removed between two snapshots ("+ path", "~ path", "- path")."""
    out = [f"+ /{p}" for p in sorted(after.keys() - before.keys())]
    out += [f"- /{p}" for p in sorted(before.keys() - after.keys())]
    out += [f"~ /{p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and file-system uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:])
    raise RuntimeError(f"no Uid line for process {pid}")


@dataclass
class ImageLauncher:
    image: str
    work: Path
    user: str = f"{APP_UID}:{APP_UID}"
    containers: dict[str, str] = field(default_factory=dict)
    before: dict[str, Snapshot] = field(default_factory=dict)
    tree: dict[int, list[int]] = field(default_factory=dict)

    def path(self, host_path: Path) -> str:
        return str(MOUNT_AT / host_path.relative_to(self.work))

    async def _container(self, name: str) -> str:
        if name not in self.containers:
            # The work directory belongs to the app's uid, so the sandbox can create its data there.
            os.chown(self.work, APP_UID, APP_UID)
            container = await buildah("from", "--pull-never", "--quiet", self.image)
            self.containers[name] = container
            self.before[name] = await asyncio.to_thread(snapshot, Path(await buildah("mount", container)))
        return self.containers[name]

    async def launch(self, name: str, args: list[str], env: dict[str, str], log: Path) -> ProcessHandle:
        container = await self._container(name)
        env_file = self.work / f".{name}.env"
        env_file.touch(mode=0o600)
        os.chown(env_file, APP_UID, APP_UID)
        env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        script = f'. {MOUNT_AT}/.{name}.env && exec python "$@"'
        command = [
            "buildah", "run", "--isolation", "chroot", "--network", "host", "--user", self.user,
            "-v", f"{self.work}:{MOUNT_AT}", container, "--", "/bin/sh", "-c", script, "sh", *args,
        ]  # fmt: skip
        with log.open("ab") as handle:
            return await asyncio.create_subprocess_exec(
                *command, stdout=handle, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
            )

    def python_pids(self, process: ProcessHandle) -> list[int]:
        """The service's own process(es) below buildah: those running python."""
        pids = []
        for pid in descendants(process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"python"):
                pids.append(pid)
        return pids

    async def signal(self, process: ProcessHandle, sig: signal.Signals) -> None:
        # Signal the service itself (buildah may not pass signals on), then buildah.
        pids = descendants(process.pid)
        self.tree[process.pid] = pids
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def finished(self, process: ProcessHandle) -> None:
        await process.wait()
        pids = self.tree.pop(process.pid, [])
        # Processes that are not our children can only be watched through /proc: the event awaited
        # is "every process of the tree gone", checked ten times a second.
        while any(alive(p) for p in pids):  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def writes_outside_tmp(self) -> dict[str, list[str]]:
        """Per container: every path created, changed or removed outside /tmp since it was created."""
        found = {}
        for name, container in self.containers.items():
            after = await asyncio.to_thread(snapshot, Path(await buildah("mount", container)))
            found[name] = changes(self.before[name], after)
        return found

    async def remove(self) -> None:
        for container in self.containers.values():
            await buildah("rm", container)
        self.containers.clear()
