"""A built wheel ships the whole dashboard (app.py, its helpers and every page script it registers) and every
module of every package folder that pyproject.toml maps to an import name.

The wheel is built from a copy of the sources, so no ``build/`` folder left by an earlier build (which
setuptools would pack as it finds it) can hide a missing package.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    # What the build reads: pyproject.toml, the readme it names and the package folders.
    for name in ("pyproject.toml", PYPROJECT["project"]["readme"], *PYPROJECT["project"].get("license-files", []),
                 *PACKAGE_DIR.values()):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path / "wheels"
    # -v: pip passes on what the build backend prints, where setuptools puts its deprecation warnings.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    # A deprecated setting works until setuptools drops it, then a new user's setup fails: the build stays clean.
    # setuptools words it "BuildBackendWarning: ... is deprecated" or SetuptoolsDeprecationWarning; pip's own
    # notices (pip upgrades itself in `make setup`) are no concern of this build
    warnings = [line for line in log.splitlines()
                if ("BuildBackendWarning" in line or "SetuptoolsDeprecationWarning" in line)]
    assert not warnings, warnings[:5]
    wheels = list(out.glob("transferlab-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    with zipfile.ZipFile(_build_wheel(tmp_path_factory.mktemp("wheel"))) as wheel:
        return set(wheel.namelist())


def test_wheel_ships_every_dashboard_script(wheel_names):
    expected = {f"transferlab/dashboard/{p.relative_to(ROOT / 'dashboard').as_posix()}"
                for pattern in ("*.py", "views/*.py") for p in (ROOT / "dashboard").glob(pattern)}
    assert "transferlab/dashboard/app.py" in expected and len([e for e in expected if "/views/" in e]) >= 2
    assert not expected - wheel_names, f"missing from the wheel: {sorted(expected - wheel_names)}"
    assert not any("/dashboard/pages/" in name for name in wheel_names), "Streamlit would scan a pages/ folder"


def test_wheel_ships_every_module_of_every_package_folder(wheel_names):
    """A subpackage left out of ``packages`` (a plugin split into a folder, say) installs without its files."""
    expected = {f"{package.replace('.', '/')}/{path.relative_to(ROOT / folder).as_posix()}"
                for package, folder in PACKAGE_DIR.items() for path in (ROOT / folder).rglob("*.py")
                if "__pycache__" not in path.parts}
    assert not expected - wheel_names, f"missing from the wheel: {sorted(expected - wheel_names)}"
