#!/usr/bin/env bash
# Refresh the locks (`make lock`): every transitive version pinned, with the hashes of every wheel
# and sdist of that version, so `pip install --require-hashes` installs the same bytes everywhere.
#   requirements/runtime.txt  the services' dependencies (the image)
#   requirements/dev.txt      plus the test and dev extras (make install, CI)
#   requirements/build.txt    the build backend (the image builds the project wheel offline)
# Resolved for CPython 3.11 on every platform (--universal), from the exact pins in pyproject.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV="${UV:-.venv/bin/uv}"
common=(--quiet --generate-hashes --universal --python-version 3.11 --custom-compile-command "make lock")
"$UV" pip compile "${common[@]}" pyproject.toml -o requirements/runtime.txt
"$UV" pip compile "${common[@]}" pyproject.toml --extra test --extra dev -o requirements/dev.txt
"$UV" pip compile "${common[@]}" requirements/build.in -o requirements/build.txt
echo "locks written: requirements/{runtime,dev,build}.txt"
