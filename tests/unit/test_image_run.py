"""The checks `make image-test` relies on: a write outside /tmp shows in the snapshot diff, one in /tmp
or in what buildah manages does not."""

import pytest

from tiktok_pipeline.image_run import changes, is_exempt, snapshot


@pytest.fixture
def root(tmp_path):
    for d in ("etc", "tmp", "run", "opt/venv/lib"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "etc/passwd").write_text("root:x:0:0\n")
    (tmp_path / "opt/venv/lib/mod.py").write_text("x = 1\n")
    return tmp_path


def test_writes_outside_tmp_are_found_and_those_inside_are_not(root):
    before = snapshot(root)
    (root / "tmp/scratch").write_text("allowed")
    (root / "run/.containerenv").write_text("")  # buildah's, while a command runs
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")  # buildah's too
    (root / "opt/venv/lib/mod.pyc").write_bytes(b"\0")  # created
    (root / "etc/passwd").write_text("root:x:0:0\napp:x:10001:10001\n")  # changed
    (root / "opt/venv/lib/mod.py").unlink()  # removed
    assert changes(before, snapshot(root)) == [
        "+ /opt/venv/lib/mod.pyc",
        "- /opt/venv/lib/mod.py",
        "~ /etc/passwd",
    ]


def test_no_change_no_finding(root):
    assert changes(snapshot(root), snapshot(root)) == []


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("tmp", True),
        ("tmp/pipeline/sandbox-data/x", True),
        ("etc/hosts", True),
        ("etc/hostsx", False),
        ("tmpfile", False),
        ("proc/1/stat", True),
        ("run", False),
        ("run/.containerenv", True),
        ("opt/venv/bin/python", False),
    ],
)
def test_exempt_paths(path, exempt):
    assert is_exempt(path) is exempt
