"""Built-in plugins use only the public API, as a third-party plugin must.

Every module under ``plugins/`` is parsed (not imported, not grepped) and each of its imports of a
``transferlab`` name is checked: ``from transferlab import X`` and ``from transferlab.api import X``
need X in the public ``__all__``; a deeper core module (``transferlab.data``, ``transferlab.safe_io``)
is refused, since a plugin that needs one shows a missing public name; and no plugin reaches into
another plugin's private names (``_helper``, or a ``_module``). Inside one plugin package, its modules
may import each other freely.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import transferlab
import transferlab.api

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
PLUGINS_PACKAGE = "transferlab.plugins"
PUBLIC = {"transferlab": set(transferlab.__all__), "transferlab.api": set(transferlab.api.__all__)}


def module_name(path: Path, root: Path = PLUGINS_DIR) -> str:
    """The import name of a file under ``plugins/``: ``plugins/a/b.py`` is ``transferlab.plugins.a.b``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PLUGINS_PACKAGE, *parts])


def _plugin_of(module: str) -> str | None:
    """``transferlab.plugins.x.y`` -> ``transferlab.plugins.x``; None outside the plugins package."""
    parts = module.split(".")
    if parts[:2] != PLUGINS_PACKAGE.split(".") or len(parts) < 3:
        return None
    return ".".join(parts[:3])


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module of a ``from ... import``, relative imports included."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _check_module(target: str, names: list[str], own_plugin: str | None) -> list[str]:
    """Why importing ``names`` from module ``target`` (or ``target`` itself, when ``names`` is empty)
    crosses the boundary; empty when it does not."""
    if target != "transferlab" and not target.startswith("transferlab."):
        return []
    if target in PUBLIC:
        return [f"{name} is not a public name of {target} (not in its __all__)"
                for name in names if name not in PUBLIC[target]]
    plugin = _plugin_of(target)
    if target == PLUGINS_PACKAGE:
        # `from transferlab.plugins import x`: x is a plugin module
        return [f"{PLUGINS_PACKAGE}.{name} is another plugin's private module"
                for name in names if name.startswith("_") and f"{PLUGINS_PACKAGE}.{name}" != own_plugin]
    if plugin is None:
        return [f"{target} is not public API: import from transferlab (transferlab.api) instead"]
    if plugin == own_plugin:
        return []
    private_parts = [p for p in target.split(".")[2:] if p.startswith("_")]
    if private_parts:
        return [f"{target} is a private module of plugin {plugin}"]
    return [f"{name} is a private name of plugin {target}" for name in names if name.startswith("_")]


def boundary_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in ``source`` (the module ``module``) that goes past the public API, as
    ``line N: <import>: <why>``."""
    own_plugin = _plugin_of(module)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            checks = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            checks = [(_resolve(node, module, is_package), [alias.name for alias in node.names])]
        else:
            continue
        for target, names in checks:
            for why in _check_module(target, names, own_plugin):
                found.append(f"line {node.lineno}: {ast.unparse(node)}: {why}")
    return found


PLUGIN_FILES = sorted(PLUGINS_DIR.rglob("*.py"))


def test_plugins_are_found():
    names = {module_name(path) for path in PLUGIN_FILES}
    assert {"transferlab.plugins.efficientnet_lite", "transferlab.plugins.object_detection.anchors",
            "transferlab.plugins.strategies"} <= names


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(PLUGINS_DIR)))
def test_plugin_imports_only_the_public_api(path: Path):
    problems = boundary_violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not problems, f"{path.relative_to(PLUGINS_DIR.parent)} imports past the public API:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "from transferlab import TaskSpec, hookimpl",
        "from transferlab.api import TaskData, VerifiedFile",
        "import transferlab",
        "import numpy as np\nfrom PIL import Image",
        "from transferlab.plugins.image_tasks import load_fashion_mnist",
        "from transferlab.plugins.road_signs import GTSRB_CLASSES",
        "from transferlab.plugins.mine.boxes import as_boxes\nfrom transferlab.plugins.mine._impl import _x",
        "from ._impl import _helper\nfrom .boxes import as_boxes",
    ],
)
def test_public_imports_pass(source: str):
    assert boundary_violations(source, "transferlab.plugins.mine.head") == []


@pytest.mark.parametrize(
    "source, why",
    [
        ("from transferlab.data import TaskData", "transferlab.data is not public API"),
        ("import transferlab.safe_io", "transferlab.safe_io is not public API"),
        ("def f():\n    from transferlab.paths import cache_dir", "transferlab.paths is not public API"),
        ("from transferlab import registry", "registry is not a public name of transferlab"),
        ("from transferlab.api import LAZY", "LAZY is not a public name of transferlab.api"),
        ("from transferlab.plugins.image_tasks import _fashion_local_dir",
         "_fashion_local_dir is a private name of plugin transferlab.plugins.image_tasks"),
        ("from transferlab.plugins.other._impl import helper", "private module of plugin transferlab.plugins.other"),
        ("from transferlab.plugins import _shared", "transferlab.plugins._shared is another plugin's private module"),
        ("from .. import image_tasks\nfrom ..image_tasks import _animal_mnist_dir", "_animal_mnist_dir is a private name"),
    ],
)
def test_imports_past_the_api_fail(source: str, why: str):
    problems = boundary_violations(source, "transferlab.plugins.mine.head")
    assert len(problems) == 1 and why in problems[0], problems


def test_relative_imports_resolve_from_a_package_init():
    assert boundary_violations("from .boxes import _x", "transferlab.plugins.mine", is_package=True) == []
    assert boundary_violations("from ..other import _x", "transferlab.plugins.mine", is_package=True) != []


def test_every_public_name_resolves_and_says_what_it_is():
    for name in transferlab.__all__:
        value = getattr(transferlab, name)
        if name in transferlab.api.__all__:
            assert getattr(transferlab.api, name) is value
        if callable(value):
            assert (value.__doc__ or "").strip(), f"transferlab.{name} has no docstring"


def test_importing_the_api_loads_no_framework():
    code = (
        "import sys, transferlab, transferlab.api\n"
        "from transferlab import TaskSpec, hookimpl, UserError\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'torch', 'PIL', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
