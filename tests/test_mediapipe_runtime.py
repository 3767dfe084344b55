"""`import_mediapipe` drops exactly the one harmless protobuf-7 line and passes everything else through."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMPORT = "from pipeline.curation.pose.mediapipe_runtime import import_mediapipe; print(import_mediapipe().__name__)"


def run(code: str, *paths: Path) -> subprocess.CompletedProcess:
    env_path = ":".join(str(p) for p in (*paths, REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


def test_only_the_harmless_line_is_dropped(tmp_path):
    fake = tmp_path / "mediapipe"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import sys\n"
        "sys.stderr.write(\"AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'\\n\")\n"
        "sys.stderr.write('a real warning\\n')\n")
    done = run(IMPORT, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "mediapipe"
    assert done.stderr == "a real warning\n"


def test_a_missing_package_is_an_import_error(tmp_path):
    done = run("import sys; sys.modules['mediapipe'] = None\n" + IMPORT)
    assert done.returncode == 1 and "ModuleNotFoundError: import of mediapipe halted" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="mediapipe is not installed")
def test_the_installed_mediapipe_imports_quietly():
    done = run(IMPORT + "; import mediapipe.python.solutions.pose")
    assert done.returncode == 0, done.stderr
    assert "GetPrototype" not in done.stderr
