"""Loading plugins and collecting what they register, one plugin and one hook at a time.

pluggy's ``load_setuptools_entrypoints`` stops at the first broken entry point, so each entry point is
loaded on its own and each hook implementation is called on its own: a broken plugin is recorded in
the health table under its own name and everything else keeps working.

Plugin code runs under a deadline and with its output captured (the mechanics: :mod:`transferlab.isolation`):

* Each import (built-in or entry point), each hook call and each :func:`safe_available` check runs in a
  daemon thread that is given ``TRANSFERLAB_PLUGIN_TIMEOUT`` seconds (default 10). One that does not
  finish in time is reported ``timed out`` in its health row and everything else goes on. A hung thread
  cannot be killed in-process; it is left running and waited on no more (Python 3 has a lock per module,
  so other imports proceed; only importing the hung module itself would wait, so a later load reports a
  still-running import at once instead of importing it again).
* Whatever plugin code writes to ``sys.stdout``/``sys.stderr`` from those threads (prints, warnings) goes
  to the plugin's ``output`` in its health row, never into a command's output, even when a timed-out
  thread prints long after. Writes by other threads pass through unchanged.

``TRANSFERLAB_STRICT_PLUGINS=1`` turns the first problem, a timeout included, into :class:`PluginError`.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from transferlab import hookspecs
from transferlab.errors import PluginError, UnknownNameError
from transferlab.isolation import TIMEOUT_ENV, CapturedOutput, plugin_timeout, run_under_deadline, short_error
from transferlab.specs import BackboneSpec, StrategySpec, TaskSpec

ENTRY_POINT_GROUP = "transferlab"

#: Built-in plugins, loaded like any other plugin through the public hooks.
DEFAULT_PLUGINS = (
    "transferlab.plugins.keras_backbones",
    "transferlab.plugins.efficientnet_lite",
    "transferlab.plugins.small_cnn",
    "transferlab.plugins.strategies",
    "transferlab.plugins.image_tasks",
    "transferlab.plugins.text_sentiment",
    "transferlab.plugins.object_detection",
    "transferlab.plugins.medical_imaging",
    "transferlab.plugins.road_signs",
    "transferlab.plugins.solar_cells",
    "transferlab.plugins.multimodal_stub",
)

_KIND = {"register_backbones": "backbone", "register_tasks": "task", "register_strategies": "strategy"}


@dataclass
class PluginHealth:
    """One row of the plugin health table."""

    name: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False
    output: CapturedOutput = field(default_factory=CapturedOutput, repr=False, compare=False)

    @property
    def status(self) -> str:
        """``ok``, ``error``, or ``timed out`` (an import or a hook did not finish within the deadline)."""
        return "timed out" if self.timed_out else "error" if self.errors else "ok"

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON-able data; ``output`` is what the plugin printed while loading."""
        return {
            "name": self.name,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": list(self.hooks),
            "registered": {k: list(v) for k, v in self.registered.items()},
            "status": self.status,
            "error": "; ".join(self.errors) or None,
            "output": self.output.text(),
        }


@dataclass
class Registry:
    """Everything the loaded plugins registered, with the plugin that registered each name."""

    backbones: dict[str, BackboneSpec] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    strategies: dict[str, StrategySpec] = field(default_factory=dict)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)
    plugins: list[PluginHealth] = field(default_factory=list)

    def backbone(self, name: str) -> BackboneSpec:
        """The backbone called ``name``; an unknown name lists the valid ones."""
        if name not in self.backbones:
            raise UnknownNameError("backbone", name, list(self.backbones))
        return self.backbones[name]

    def task(self, name: str) -> TaskSpec:
        """The task called ``name``; an unknown name lists the valid ones."""
        if name not in self.tasks:
            raise UnknownNameError("task", name, list(self.tasks))
        return self.tasks[name]

    def strategy(self, name: str) -> StrategySpec:
        """The strategy called ``name``; an unknown name lists the valid ones."""
        if name not in self.strategies:
            raise UnknownNameError("strategy", name, list(self.strategies))
        return self.strategies[name]

    def select(self, kind: str, **attrs: Any) -> list[Any]:
        """The registered specs of ``kind`` (``backbone``, ``task``, ``strategy``) whose attributes equal
        ``attrs``, in registration order: ``select("strategy", random_init=True)``, ``select("task", stub=False)``.

        The one filter over the registry, instead of a comprehension in every caller.
        """
        table = {"backbone": self.backbones, "task": self.tasks, "strategy": self.strategies}
        if kind not in table:
            raise ValueError(f"kind must be one of {sorted(table)}. Received: kind={kind!r}")
        return [spec for spec in table[kind].values()
                if all(getattr(spec, name) == value for name, value in attrs.items())]

    def baseline_strategies(self) -> set[str]:
        """Names of the strategies that declare random init: the baseline every gain is measured against."""
        return {spec.name for spec in self.select("strategy", random_init=True)}

    def frozen_strategies(self) -> set[str]:
        """Names of the strategies that never train the base (its features with a trained head)."""
        return {spec.name for spec in self.strategies.values() if not any(p.trains_base for p in spec.phases)}

    def imagenet_top1(self) -> dict[tuple[str, str], float]:
        """``(backbone, weight source) -> published ImageNet top-1`` for every source pretrained on ImageNet
        whose top-1 is known (the source's own figure, else the backbone's)."""
        table = {}
        for backbone in self.backbones.values():
            for source in backbone.weight_sources:
                top1 = source.imagenet_top1 or backbone.imagenet_top1
                if source.pretrained_on == "imagenet" and top1:
                    table[(backbone.name, source.name)] = float(top1)
        return table

    def plugin_version(self, plugin: str | None) -> str | None:
        """The version of the plugin called ``plugin`` (its distribution's; a built-in's is transferlab's)."""
        return next((p.version for p in self.plugins if p.name == plugin), None)

    def health(self) -> list[dict[str, Any]]:
        """The plugin health table as a list of dicts."""
        return [p.as_dict() for p in self.plugins]


def safe_available(spec: Any) -> bool | str:
    """``spec.available()`` of a task or weight source, under the plugin deadline and with its output captured.

    Returns True or False as the check answered, or a one-line reason (a string) when it raised or timed out,
    for the caller to show in the spec's row: one plugin's check never hangs or fails a command or page.
    """
    check = spec.available
    outcome = run_under_deadline(lambda: bool(check()), "available()", getattr(spec, "name", "?"), plugin_timeout(),
                                 CapturedOutput(), key=("available", id(check)), keep=check)
    if outcome.timed_out:
        return outcome.timed_out
    if outcome.error is not None:
        return f"available() raised {short_error(outcome.error)}"
    return outcome.value


def availability_label(spec: Any, yes: str, no: str) -> str:
    """``yes`` or ``no`` as :func:`safe_available` answers for ``spec``, or ``unknown (<reason>)`` when the
    plugin's check raised or timed out: the text of an availability cell in a table or page."""
    answer = safe_available(spec)
    if isinstance(answer, str):
        return f"unknown ({answer})"
    return yes if answer else no


# --------------------------------------------------------------------------------- loading plugins

def _strict() -> bool:
    return os.environ.get("TRANSFERLAB_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _fail(health: PluginHealth, message: str, timed_out: bool = False) -> None:
    health.errors.append(message)
    health.timed_out = health.timed_out or timed_out
    if _strict():
        raise PluginError(f"Plugin {health.name!r}: {message} (TRANSFERLAB_STRICT_PLUGINS is set)")


def _allowed_external() -> set[str] | None:
    raw = os.environ.get("TRANSFERLAB_PLUGINS")
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _import(health: PluginHealth, load: Callable[[], Any], module: str, timeout: float) -> Any:
    """The plugin object ``load()`` imports, or None with the failure or timeout in ``health``."""
    outcome = run_under_deadline(load, "import", health.name, timeout, health.output, key=("import", module))
    health.output = outcome.output
    if outcome.timed_out:
        _fail(health, outcome.timed_out, timed_out=True)
    elif outcome.error is not None:
        _fail(health, f"failed to import: {short_error(outcome.error)}")
    return None if outcome.failed else outcome.value


def _candidates(extra_plugins: Iterable[tuple[str, Any]], timeout: float) -> list[tuple[PluginHealth, Any]]:
    """Import built-ins and entry points one by one; failures and timeouts become health rows."""
    from transferlab import __version__

    found: list[tuple[PluginHealth, Any]] = []
    for module_name in DEFAULT_PLUGINS:
        health = PluginHealth(name=module_name, version=__version__, builtin=True)
        found.append((health, _import(health, lambda m=module_name: importlib.import_module(m), module_name, timeout)))
    allowed = _allowed_external()
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allowed is not None and ep.name not in allowed:
            continue
        version = getattr(getattr(ep, "dist", None), "version", None) or "?"
        health = PluginHealth(name=ep.name, version=version, builtin=False)
        found.append((health, _import(health, ep.load, ep.module, timeout)))
    for name, obj in extra_plugins:
        found.append((PluginHealth(name=name, version="-", builtin=False), obj))
    return found


def load_registry(extra_plugins: Iterable[tuple[str, Any]] = ()) -> Registry:
    """Load every plugin and collect what it registers.

    ``extra_plugins`` are ``(name, object)`` pairs registered after the built-ins and entry points
    (tests use it for tiny backbones). ``TRANSFERLAB_PLUGINS=a,b`` loads only the named entry points
    (empty: none); ``TRANSFERLAB_STRICT_PLUGINS=1`` raises :class:`PluginError` at the first problem;
    ``TRANSFERLAB_PLUGIN_TIMEOUT`` is the deadline of each import and hook call, in seconds.
    """
    timeout = plugin_timeout()  # a bad value fails here, before any plugin is loaded
    registry = Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    marker = f"{hookspecs.PROJECT}_impl"
    for health, obj in _candidates(extra_plugins, timeout):
        registry.plugins.append(health)
        if obj is None:
            continue
        hook_names = sorted(n for n in dir(obj) if hasattr(getattr(obj, n, None), marker))
        unknown = [n for n in hook_names if n not in hookspecs.HOOK_RESULT_TYPES]
        if unknown:
            _fail(health, f"implements unknown hook(s) {unknown}; valid hooks: {sorted(hookspecs.HOOK_RESULT_TYPES)}")
            continue
        try:
            pm.register(obj, name=health.name)
        except Exception as exc:  # signature mismatch with the hookspec, or a name clash
            _fail(health, f"failed to register: {short_error(exc)}")
            continue
        health.hooks = hook_names
        for hook_name in hook_names:
            _collect(registry, health, hook_name, getattr(obj, hook_name), timeout)
    return registry


def _collect(registry: Registry, health: PluginHealth, hook_name: str, impl: Any, timeout: float) -> None:
    expected = hookspecs.HOOK_RESULT_TYPES[hook_name]
    kind = _KIND[hook_name]
    outcome = run_under_deadline(impl, hook_name, health.name, timeout, health.output)
    if outcome.timed_out:
        _fail(health, outcome.timed_out, timed_out=True)
        return
    if outcome.error is not None:
        _fail(health, f"{hook_name} raised {short_error(outcome.error)}")
        return
    result = outcome.value
    if not isinstance(result, (list, tuple)) or not all(isinstance(item, expected) for item in result):
        got = type(result).__name__ if not isinstance(result, (list, tuple)) else [type(i).__name__ for i in result]
        _fail(health, f"{hook_name} must return a list of {expected.__name__}. Received: {got}")
        return
    target: dict[str, Any] = getattr(registry, {"backbone": "backbones", "task": "tasks", "strategy": "strategies"}[kind])
    for item in result:
        if item.name in target:
            other = registry.owner[(kind, item.name)]
            _fail(health, f"{kind} {item.name!r} is already registered by plugin {other!r}; left out")
            continue
        target[item.name] = item
        registry.owner[(kind, item.name)] = health.name
        # Stubs are listed as such wherever plugins are shown, and never count as working tasks.
        health.registered.setdefault(kind, []).append(item.name + (" (stub)" if getattr(item, "stub", False) else ""))


_CACHED: dict[tuple[str | None, ...], Registry] = {}


def get_registry() -> Registry:
    """The process-wide registry, loaded once per plugin-selection environment."""
    key = (os.environ.get("TRANSFERLAB_PLUGINS"), os.environ.get("TRANSFERLAB_STRICT_PLUGINS"),
           os.environ.get(TIMEOUT_ENV))
    if key not in _CACHED:
        _CACHED[key] = load_registry()
    return _CACHED[key]
