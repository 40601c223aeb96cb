"""The hook reference stays in sync with the hookspecs, and every hook is exercised by a test."""
from __future__ import annotations

import inspect
from pathlib import Path

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


def test_every_hook_has_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("*.py") if p.name != Path(__file__).name)
    for name in _hooks():
        assert f"def {name}" in tests, f"no test plugin implements {name}"
