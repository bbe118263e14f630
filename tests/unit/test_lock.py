"""The locks in requirements/ match pyproject.toml's pins (a pin changed without `make lock` fails
here), and every locked requirement carries hashes (pip --require-hashes refuses it otherwise)."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements):
    """{name: version} of ``name[extras]==version`` lines (the lock's or pyproject's)."""
    found = {}
    for line in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^ ;\\]+)", line.strip())
        if match:
            found[normal(match.group(1))] = match.group(2)
    return found


def locked(name):
    return pins((ROOT / "requirements" / name).read_text().splitlines())


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("runtime.txt", PYPROJECT["project"]["dependencies"]),
        (
            "dev.txt",
            [
                *PYPROJECT["project"]["dependencies"],
                *(r for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra),
            ],
        ),
        ("build.txt", (ROOT / "requirements" / "build.in").read_text().splitlines()),
    ],
)
def test_the_lock_holds_every_pin_of_pyproject(lock, wanted):
    have = locked(lock)
    for name, version in pins(wanted).items():
        assert have.get(name) == version, (
            f"{lock}: {name}=={version} wanted, locked {have.get(name)} (run make lock)"
        )


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt", "build.txt"])
def test_every_locked_requirement_has_hashes(lock):
    text = (ROOT / "requirements" / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2] if text.startswith("#") else text)
    for entry in entries:
        if entry.strip() and not entry.lstrip().startswith("#"):
            assert "--hash=sha256:" in entry, entry[:200]
