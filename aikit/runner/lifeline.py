"""A run's child process ends with the process that started it, and takes its kernel along.

`aikit run` starts one child per run (`aikit.runner.execute`), and each child a Jupyter kernel
in a session of its own. When `aikit run` is killed (even `kill -9`), `watch_parent` in the
child sees it within `POLL_S`, kills the kernel's process group, lets the child record what the
run did (a run that had executed every cell is kept as it finished; an interrupted one is left
`running`, which `aikit runs` shows as `running (process gone)`), and ends the child after
`GRACE_S` at the latest. `QuietStream` keeps a write to the dead parent's pipe (the cell
progress on stderr) from failing a run: the parent being gone is not the notebook's failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import IO, Any

PARENT_ENV = "AIKIT_RUN_PARENT"  # the pid of the process that started a run's child
POLL_S = 0.2
GRACE_S = 15.0


class QuietStream:
    """A text stream whose writes never raise (a closed pipe to a parent that is gone)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc; empty where there is none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.parent.name))
    return found


def kill_children() -> None:
    """SIGKILL every child of this process, with its process group when it leads one (a
    Jupyter kernel runs in a session of its own, with whatever it started)."""
    own = os.getpgid(0)
    for pid in children(os.getpid()):
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group == pid and group != own:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


def watch_parent() -> threading.Event:
    """An event set when the process named by `AIKIT_RUN_PARENT` is no longer this one's
    parent; then the children are killed and, after `GRACE_S`, this process exits."""
    gone = threading.Event()
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit():
        return gone

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(POLL_S)
        gone.set()
        kill_children()
        time.sleep(GRACE_S)  # time to record the run; then end, whatever it is doing
        os._exit(0)

    threading.Thread(target=watch, name="aikit-lifeline", daemon=True).start()
    return gone
