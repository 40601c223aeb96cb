"""Whether the process that claimed a run is still alive, judged from its host, pid and start time.

A pid alone is not enough: the kernel hands a dead process's pid to a later one, so a run whose worker
died could look alive. The process's start time (field 22 of ``/proc/PID/stat``, clock ticks since boot;
psutil's create time elsewhere) tells the two apart. A pid names a process only within one boot and one
pid namespace (a container has its own), so a process is judged only from the same host, boot and pid
namespace; from anywhere else the answer is ``unknown`` and the heartbeat timeout decides.

Written here rather than taken from psutil because psutil is optional and, on Linux, two reads of
``/proc`` are all it would do; psutil is used where there is no ``/proc``.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"


@dataclass(frozen=True)
class ProcessIdentity:
    """Who holds a run: the host, the pid, when that process started, and where its pid means it."""

    host: str | None
    pid: int | None
    started: str | None = None  # "linux:<ticks since boot>" or "psutil:<create time>"; None: not known
    pidspace: str | None = None  # the boot and pid namespace the pid belongs to; None: not known


_current: dict[int, ProcessIdentity] = {}


def current() -> ProcessIdentity:
    """This process's identity (computed once per process; a forked child computes its own)."""
    pid = os.getpid()
    if pid not in _current:
        _current[pid] = ProcessIdentity(host=socket.gethostname(), pid=pid, started=start_token(pid),
                                        pidspace=_pidspace())
    return _current[pid]


def _linux_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in ticks) from /proc/PID/stat, or None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name in parentheses may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _psutil():
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def start_token(pid: int) -> str | None:
    """When process ``pid`` started, as a token comparable on this machine; None when it cannot be told."""
    if sys.platform.startswith("linux"):
        stat = _linux_stat(pid)
        return f"linux:{stat[1]}" if stat else None
    psutil = _psutil()
    if psutil is not None:
        try:
            return f"psutil:{psutil.Process(pid).create_time():.3f}"
        except Exception:  # gone, or not ours to inspect
            return None
    return None


def _pidspace() -> str | None:
    """The boot and pid namespace this process's pids belong to (Linux), else the platform and boot time."""
    if sys.platform.startswith("linux"):
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            return None
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = "?"
        return f"linux:{boot}:{namespace}"
    psutil = _psutil()
    if psutil is not None:
        return f"{sys.platform}:boot {psutil.boot_time():.0f}"
    return None


def state(identity: ProcessIdentity) -> str:
    """``alive``, ``dead`` or ``unknown`` for the process ``identity`` names, seen from this process.

    ``dead`` only when it is certain: same host, boot and pid namespace, and the pid is gone, a zombie, or
    now belongs to a process that started at another time. Another host, a pid without a start time that
    is in use, or a platform without a way to look: ``unknown``.
    """
    me = current()
    if identity.pid is None or identity.host != me.host or identity.pidspace is None or identity.pidspace != me.pidspace:
        return UNKNOWN
    pid = int(identity.pid)
    if identity.started is None:
        return DEAD if _pid_gone(pid) else UNKNOWN
    kind = identity.started.split(":", 1)[0]
    if kind == "linux" and sys.platform.startswith("linux"):
        stat = _linux_stat(pid)
        if stat is None:
            return DEAD if _pid_gone(pid) else UNKNOWN  # hidden from us (hidepid) but there
        if stat[0] in ("Z", "X"):  # exited, not yet reaped by its parent
            return DEAD
        return ALIVE if f"linux:{stat[1]}" == identity.started else DEAD
    psutil = _psutil()
    if kind == "psutil" and psutil is not None:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return DEAD
            return ALIVE if f"psutil:{proc.create_time():.3f}" == identity.started else DEAD
        except psutil.NoSuchProcess:
            return DEAD
        except Exception:
            return UNKNOWN
    return DEAD if _pid_gone(pid) else UNKNOWN


def _pid_gone(pid: int) -> bool:
    """True only when no process has this pid (POSIX signal 0); False when it exists or cannot be told."""
    if os.name != "posix":
        return False  # os.kill(pid, 0) on Windows would send CTRL_C_EVENT, not probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False
