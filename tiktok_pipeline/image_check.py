"""``make image-test``: the image run as it is deployed, checked end to end.

1. The runtime image has no pip and no compiler, and runs as uid 10001 by default.
2. The demo's flow (``tiktok_pipeline.demo.run``) with the sandbox, auth_service and publish_service
   each running from the image (``buildah run``) as uid 10001 against the local stack: a video
   published, byte-exact at the sandbox.
3. None of the three wrote anything outside /tmp (each container's files listed before and after).

Needs the stack's variables (``.stack/env``) and ``IMAGE`` (default localhost/tiktok-pipeline:dev).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from common.logging import configure_logging
from common.settings import EnvReader
from tiktok_pipeline.demo import Steps, print_summary, run
from tiktok_pipeline.image_run import APP_UID, ImageLauncher, buildah, uids
from tiktok_pipeline.local import LocalPipeline

console = Console()
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc-12", "aarch64-linux-gnu-gcc-12")
PROBE = f"""
import importlib.util, os, shutil, sys
problems = [f"{{m}} is importable" for m in ("pip", "setuptools") if importlib.util.find_spec(m)]
problems += [f"compiler {{c}} at {{shutil.which(c)}}" for c in {COMPILERS!r} if shutil.which(c)]
if os.getuid() != {APP_UID}:
    problems.append(f"runs as uid {{os.getuid()}}, not {APP_UID}")
print("; ".join(problems) or "ok")
"""


async def check_contents(image: str) -> list[str]:
    """Problems with what the runtime image holds (empty: none)."""
    container = await buildah("from", "--pull-never", "--quiet", image)
    try:
        answer = await buildah("run", "--isolation", "chroot", container, "--", "python", "-c", PROBE)
    finally:
        await buildah("rm", container)
    return [] if answer == "ok" else answer.split("; ")


async def image_size(image: str) -> str:
    return await buildah("images", "--format", "{{.Size}}", image)


async def amain(image: str, work: Path) -> int:
    failures: list[str] = []
    console.print(f"[bold]image[/bold] {image}: {await image_size(image)}")
    failures += await check_contents(image)
    launcher = ImageLauncher(image, work)
    pipeline = LocalPipeline(EnvReader(), work, launcher=launcher)
    step = Steps()
    try:
        result = await run(pipeline, step)
        print_summary(result, work)
        with step("check every service runs from the image as uid 10001"):
            for service in pipeline.services:
                assert service.process is not None  # noqa: S101 - started by run()
                pids = launcher.python_pids(service.process)
                seen = {pid: uids(pid) for pid in pids}
                console.print(f"  {service.name}: pids {pids}, uids {sorted(set(seen.values()))}")
                if not pids or any(set(u) != {APP_UID} for u in seen.values()):
                    failures.append(f"{service.name} runs as {seen or 'nothing'}, not uid {APP_UID}")
    except Exception as exc:  # noqa: BLE001 - reported with the step and the log, like the demo
        failures.append(f"step '{step.current}': {type(exc).__name__}: {exc} (log: {step.log})")
    finally:
        with step("stop the services"):
            await pipeline.stop()
        with step("check nothing was written outside /tmp"):
            for name, written in (await launcher.writes_outside_tmp()).items():
                console.print(f"  {name}: {len(written)} path(s) written outside /tmp")
                failures += [f"{name} wrote {path}" for path in written]
        await launcher.remove()
    if failures:
        for failure in failures:
            console.print(f"[bold red]FAIL[/bold red] {failure}")
        console.print(f"logs kept in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    console.print("[bold green]image check passed[/bold green]")
    return 0


def main() -> int:
    configure_logging("WARNING", "console")
    work = Path(tempfile.mkdtemp(prefix="tiktok-pipeline-image-"))
    work.chmod(0o755)  # uid 10001 reads the sandbox's config here; the secrets are in 0600 files
    return asyncio.run(amain(os.environ.get("IMAGE", "localhost/tiktok-pipeline:dev"), work))


if __name__ == "__main__":
    sys.exit(main())
