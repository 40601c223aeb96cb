"""Running plugin code under a deadline, with what it prints kept out of the command's output.

:func:`run_under_deadline` calls plugin code in a daemon thread and waits ``TRANSFERLAB_PLUGIN_TIMEOUT``
seconds (default 10) for it. A hung thread cannot be killed in-process; it is left running and waited on
no more. Python 3 has a lock per module, so other imports proceed; only importing the hung module itself
would wait on it, which is why a call still running under the same key is reported at once rather than
started again.

While plugin threads run, ``sys.stdout`` and ``sys.stderr`` are routed by thread: what a plugin thread
writes (prints, warnings) goes to its :class:`CapturedOutput`, even when a timed-out thread writes long
after; what any other thread writes passes through unchanged. Writes straight to the file descriptors (from
C code, or ``os.write(1, ...)``) are not seen.
"""
from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from transferlab.errors import UserError

TIMEOUT_ENV = "TRANSFERLAB_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0
#: characters of a plugin's captured output that are kept (its start and its end)
OUTPUT_LIMIT = 2000


def plugin_timeout() -> float:
    """Seconds each plugin import, hook call and availability check may take: ``TRANSFERLAB_PLUGIN_TIMEOUT``,
    default 10."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # NaN fails this too
        raise UserError(f"{TIMEOUT_ENV} must be a number of seconds greater than 0 (default {DEFAULT_TIMEOUT_S:g}). "
                        f"Received: {TIMEOUT_ENV}={raw!r}")
    return value


def short_error(exc: BaseException) -> str:
    """``Type: message (file:line)`` of an exception, the line being where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


class CapturedOutput:
    """What plugin code wrote, kept bounded: its first and last ``OUTPUT_LIMIT // 2`` characters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a timed-out thread may write while the main thread reads
        self._head = ""
        self._tail = ""
        self._total = 0

    def write(self, text: str) -> None:
        """Keep ``text`` (only the ends of long output, so a plugin printing forever costs no memory)."""
        half = OUTPUT_LIMIT // 2
        with self._lock:
            self._total += len(text)
            room = half - len(self._head)
            if room > 0:
                self._head, text = self._head + text[:room], text[room:]
            if text:
                self._tail = (self._tail + text)[-half:]

    def text(self) -> str:
        """Everything written, with the middle of long output replaced by a count of what was left out."""
        with self._lock:
            left_out = self._total - len(self._head) - len(self._tail)
            if left_out > 0:
                return f"{self._head}\n[... {left_out} characters left out ...]\n{self._tail}"
            return self._head + self._tail


#: plugin thread -> where its writes to sys.stdout/sys.stderr go
_ROUTES: dict[threading.Thread, CapturedOutput] = {}
_STREAMS_LOCK = threading.Lock()
_STREAM_USERS = 0


class _ThreadRoutedStream:
    """Stands in for ``sys.stdout``/``sys.stderr``: writes from a plugin thread go to that plugin's output,
    writes from every other thread to the stream it replaced.

    ``contextlib.redirect_stdout`` swaps the stream for the whole process for a while; routing by thread is
    what keeps apart a timed-out plugin that prints long after, and the command (or another Streamlit
    session) printing meanwhile.
    """

    def __init__(self, stream: Any) -> None:
        self.wrapped = stream

    def write(self, text: str) -> int:
        """Send ``text`` to the current thread's plugin output, or else to the wrapped stream."""
        output = _ROUTES.get(threading.current_thread())
        if output is not None:
            output.write(str(text))
            return len(text)
        return self.wrapped.write(text) if self.wrapped is not None else len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the wrapped stream (plugin output needs no flushing)."""
        if threading.current_thread() not in _ROUTES and self.wrapped is not None:
            self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _hold_streams() -> None:
    global _STREAM_USERS
    with _STREAMS_LOCK:
        _STREAM_USERS += 1
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _ThreadRoutedStream):
                setattr(sys, name, _ThreadRoutedStream(getattr(sys, name)))


def _release_streams(user: bool) -> None:
    """Put the original streams back once nobody waits on plugin code and no plugin thread still runs."""
    global _STREAM_USERS
    with _STREAMS_LOCK:
        _STREAM_USERS -= user
        if _STREAM_USERS or _ROUTES:
            return
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _ThreadRoutedStream):  # not when someone has wrapped it in turn since
                setattr(sys, name, stream.wrapped)


@dataclass
class Outcome:
    """How a call of plugin code ended: its value, the exception it raised, or why it timed out."""

    output: CapturedOutput
    value: Any = None
    error: BaseException | None = None
    timed_out: str | None = None  # the message, when it did not finish in time

    @property
    def failed(self) -> bool:
        """True when the call raised or timed out."""
        return self.error is not None or self.timed_out is not None


@dataclass
class _StillRunning:
    thread: threading.Thread
    output: CapturedOutput
    timeout: float
    keep: Any = None  # holds the object whose id() is in the key, so that id is not reused


_STILL_RUNNING: dict[tuple[str, Any], _StillRunning] = {}


def run_under_deadline(fn: Callable[[], Any], what: str, label: str, timeout: float, output: CapturedOutput,
                       key: tuple[str, Any] | None = None, keep: Any = None) -> Outcome:
    """Call ``fn`` in a daemon thread, what it writes going to ``output``; stop waiting after ``timeout`` seconds.

    ``what`` names the call in messages (``import``, a hook name); ``label`` (the plugin) names the thread.
    A call still running from an earlier try under the same ``key`` is not started again (an import would
    only wait on the hung one's module lock): it is reported timed out at once, with the earlier output.
    ``keep`` is held while the call runs, for keys made of an ``id()``.
    """
    earlier = _STILL_RUNNING.get(key) if key is not None else None
    if earlier is not None and earlier.thread.is_alive():
        return Outcome(earlier.output, timed_out=f"{what} is still running from an earlier try that timed out "
                                                 f"after {earlier.timeout:g} s ({TIMEOUT_ENV}); left out")
    outcome = Outcome(output)

    def call() -> None:
        try:
            outcome.value = fn()
        except BaseException as exc:  # SystemExit or KeyboardInterrupt from plugin code is the plugin's failure
            outcome.error = exc
        finally:
            _ROUTES.pop(thread, None)
            _release_streams(user=False)

    thread = threading.Thread(target=call, name=f"transferlab plugin {label}: {what}", daemon=True)
    _hold_streams()
    _ROUTES[thread] = output  # before start, so that its very first write is routed
    try:
        thread.start()
        thread.join(timeout)
    finally:
        _release_streams(user=True)
    if thread.is_alive():
        if key is not None:
            _STILL_RUNNING[key] = _StillRunning(thread, output, timeout, keep)
        outcome.timed_out = f"{what} timed out after {timeout:g} s ({TIMEOUT_ENV}); left out"
    elif key is not None:
        _STILL_RUNNING.pop(key, None)
    return outcome
