"""Ranking in the background, for the Rank page: a detached ``transferlab rank`` process.

A cold ranking takes about a minute on 2 CPU cores (it builds each backbone and extracts its features) and
imports TensorFlow, which the viewing pages never do, so the page starts it as its own process in its own
session, like a sweep launched from the Run page, and polls. Its folder under
``<home>/rank-launches/<id>/`` holds the command, the log, and the exit status once it ends; the ranking
itself lands where :mod:`transferlab.rank_store` keeps rankings.

``python -m transferlab.rank_launch FOLDER`` is what the process runs: the ``transferlab rank`` command of the
folder's ``launch.json``, its exit status written to ``exit_code`` at the end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from transferlab.errors import UserError

LOG_TAIL_LINES = 12


@dataclass
class RankLaunch:
    """A background ranking started from the dashboard."""

    launch_id: str
    task: str
    argv: list[str]
    folder: str
    created_at: float
    pid: int | None = None
    started: str | None = None  # the process's start token (transferlab.liveness), to tell a recycled pid apart

    @property
    def exit_code(self) -> int | None:
        """The command's exit status once it ended (0: the ranking is stored), else None."""
        try:
            return int((Path(self.folder) / "exit_code").read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        """Whether the ranking process still runs (the same process: a recycled pid does not count)."""
        import dataclasses

        from transferlab.liveness import ALIVE, current, state

        if self.pid is None or self.exit_code is not None:
            return False
        return state(dataclasses.replace(current(), pid=self.pid, started=self.started)) == ALIVE

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the process's output (its error message, when it failed)."""
        try:
            text = (Path(self.folder) / "log.txt").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _root(create: bool) -> Path:
    from transferlab.paths import home

    root = home() / "rank-launches"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def rank_command(task: str | None = None, data: str | None = None, max_images: int | None = None,
                 input_size: int | None = None, backbones: str | None = None) -> list[str]:
    """The ``transferlab rank`` arguments for a ranking of registered ``task`` or of ``data`` (a location)."""
    if (task is None) == (data is None):
        raise UserError("Rank a registered task or your data, one of them.")
    argv = ["rank", *(["--task", task] if task is not None else ["--data", data])]
    if max_images is not None:
        argv += ["--max-images", str(int(max_images))]
    if input_size:
        argv += ["--input-size", str(int(input_size))]
    if backbones:
        argv += ["--backbones", backbones]
    return argv


def launch_rank(task_name: str, argv: list[str]) -> RankLaunch:
    """Start ``transferlab <argv>`` (see :func:`rank_command`) as a detached process and return at once."""
    from transferlab.liveness import start_token

    if os.environ.get("TRANSFERLAB_READ_ONLY", "").strip().lower() in ("1", "true", "yes"):
        raise UserError("This transferlab is read-only (TRANSFERLAB_READ_ONLY is set): ranking is disabled.")
    launch_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    folder = _root(create=True) / launch_id
    folder.mkdir()
    record = RankLaunch(launch_id=launch_id, task=task_name, argv=list(argv), folder=str(folder),
                        created_at=time.time())
    (folder / "launch.json").write_text(json.dumps(asdict(record)))
    env = dict(os.environ, TRANSFERLAB_QUIET="1")
    with open(folder / "log.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "transferlab.rank_launch", str(folder)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    record.pid, record.started = proc.pid, start_token(proc.pid)
    tmp = folder / "launch.json.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, folder / "launch.json")
    return record


def rank_launches(task: str | None = None) -> list[RankLaunch]:
    """The background rankings recorded in this home (of ``task`` only, when given), newest first."""
    root = _root(create=False)
    if not root.is_dir():
        return []
    found = []
    for path in root.glob("*/launch.json"):
        try:
            record = RankLaunch(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # a half-written record from a crash
        if task is None or record.task == task:
            found.append(record)
    return sorted(found, key=lambda r: r.created_at, reverse=True)


def _run(folder: str) -> int:
    from transferlab.cli import main

    record = json.loads((Path(folder) / "launch.json").read_text())
    code = 1
    try:
        code = main(record["argv"])
    finally:
        (Path(folder) / "exit_code").write_text(str(code))
    return code


if __name__ == "__main__":  # pragma: no cover - the background process
    sys.exit(_run(sys.argv[1]))
