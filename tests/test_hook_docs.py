"""The hook reference stays in sync with the hookspecs, and every hook is exercised by a test."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from transferlab import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}


def test_every_hookspec_is_documented_with_its_docstring():
    doc = (ROOT / "docs" / "hooks.md").read_text()
    hooks = _hooks()
    assert set(hooks) == set(hookspecs.HOOK_RESULT_TYPES)
    for name, fn in hooks.items():
        assert f"## `{name}`" in doc, f"docs/hooks.md has no section for {name}"
        assert inspect.getdoc(fn).splitlines()[0] in doc, f"docs/hooks.md does not quote {name}'s docstring"
    documented = {line[4:-1] for line in doc.splitlines() if line.startswith("## `")}
    assert documented == set(hooks), f"docs/hooks.md documents hooks that do not exist: {documented - set(hooks)}"


def _test_function_names() -> set[str]:
    """Names of the test functions pytest collects (module level, or in ``Test*`` classes) across tests/."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            members = node.body if isinstance(node, ast.ClassDef) and node.name.startswith("Test") else [node]
            names.update(m.name for m in members if isinstance(m, functions) and m.name.startswith("test_"))
    return names


@pytest.mark.parametrize("hook", sorted(_hooks()))
def test_plugin_hooks_have_tests(hook):
    # datasette's rule: each hook has a test named after it, so a new hookspec fails here until it has one
    if f"test_hook_{hook}" not in _test_function_names():
        pytest.fail(f"Hook {hook!r} has no test: add a test function named test_hook_{hook} to tests/ that "
                    f"registers a plugin implementing {hook} and checks what it registers.")
