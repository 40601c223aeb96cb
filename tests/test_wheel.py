"""A built wheel ships the whole dashboard: app.py, its helpers and every page script it registers.

The wheel is built from a copy of the sources, so no ``build/`` folder left by an earlier build (which
setuptools would pack as it finds it) can hide a missing package.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What pyproject.toml needs to build: its package folders and the readme it names.
BUILD_INPUTS = ("pyproject.toml", "README.md", "core", "plugins", "dashboard")


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = list(out.glob("transferlab-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_every_dashboard_script(tmp_path):
    expected = {f"transferlab/dashboard/{p.relative_to(ROOT / 'dashboard').as_posix()}"
                for pattern in ("*.py", "views/*.py") for p in (ROOT / "dashboard").glob(pattern)}
    assert "transferlab/dashboard/app.py" in expected and len([e for e in expected if "/views/" in e]) >= 2
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        shipped = set(wheel.namelist())
    assert not expected - shipped, f"missing from the wheel: {sorted(expected - shipped)}"
    assert not any("/dashboard/pages/" in name for name in shipped), "a pages/ folder would be scanned by Streamlit"
