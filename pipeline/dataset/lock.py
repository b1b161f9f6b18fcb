"""One writer per output: the ``_lock.json`` a run holds while it writes into its ``--output``.

Two runs writing into one output at the same time would each commit their own shards of
the same clips (their batches differ), so every row would be stored twice. A run therefore
takes the output's lock before it plans its input and gives it back when it ends (also on
an error). The lock is a small JSON file, ``<output>/_lock.json``, holding the holder's
host, pid and start time (UTC).

* Local outputs: the file is written aside and hard-linked into place (an exclusive
  create: the link fails when the lock exists), so of two runs started at once exactly
  one gets it, and a lock is never seen half written; the other is refused with :class:`OutputLocked`, whose message
  names the file and how to clear it. A lock whose pid is no longer alive on this host is
  stale (a killed run): it is taken over with a log line.
* Remote outputs (``gs://...``, any URI): object stores have no exclusive create, so the
  lock is checked then written (no exclusive create): a lock left by a live or killed run is still refused
  (clear it with ``--force_unlock``), but two runs started within the same second may both
  pass. A run that committed clips twice is then failed by its end-of-run books
  (:mod:`pipeline.dataset.books`), and the reader, the selection and ``stats.json`` count
  each clip once (the first shard name holding it owns it).

``--force_unlock`` removes any lock first: use it only after checking that no run is alive.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from pipeline.dataset.fs import ArrowStorage, Storage, is_local, resolve

LOGGER = logging.getLogger(__name__)

LOCK_FILE = "_lock.json"


class OutputLocked(ValueError):
    """Another run holds the output's lock (or a lock could not be read)."""


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": uuid.uuid4().hex}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _is_stale(holder: dict[str, Any]) -> bool:
    """A lock of this host whose process is gone (a killed run)."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


def _refusal(path: str, holder: dict[str, Any] | None) -> OutputLocked:
    who = (f"run pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} UTC"
           if holder else "an unreadable lock")
    return OutputLocked(
        f"{path}: another run is writing into this output ({who}); two writers would store every row twice. "
        f"Wait for it to end, or, after checking that no run is alive, clear the lock with --force_unlock "
        f"(or delete {path})")


class OutputLock:
    """The lock of one output folder (a context manager: acquire on enter, release on exit).

    Args:
        output: the output folder (local path or URI).
        force: remove any existing lock first (``--force_unlock``).
        filesystem: a ``pyarrow.fs``/fsspec filesystem the output is in (None: from the path).
    """

    def __init__(self, output: str, force: bool = False, filesystem: Any = None):
        fs, inner = resolve(output, filesystem)
        self.local = is_local(fs)
        self.storage: Storage = ArrowStorage(fs)
        self.path = os.path.join(inner, LOCK_FILE) if self.local else self.storage.join(inner, LOCK_FILE)
        self.force = force
        self.holder: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.storage.read_bytes(self.path))
            return value if isinstance(value, dict) else None
        except (OSError, ValueError):
            return None

    def _create_local(self, holder: dict[str, Any]) -> bool:
        """Create the lock file, whole, exclusively (written aside, then hard-linked into
        place: the link fails when the lock exists); False when it exists."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        aside = f"{self.path}.{holder['token']}"
        with open(aside, "w") as handle:
            json.dump(holder, handle)
        try:
            os.link(aside, self.path)
        except FileExistsError:
            return False
        finally:
            os.remove(aside)
        return True

    def _take_over_local(self, stale: dict[str, Any]) -> bool:
        """Move a stale lock aside (atomic: of two runs taking it over, one moves it) and
        create ours; False when another run got there first."""
        aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return self._create_local(self.holder)
        try:
            with open(aside) as handle:
                moved = json.load(handle)
        except (OSError, ValueError):
            moved = None
        if moved != stale:  # another run took it over and wrote its own lock since we read it: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.remove(aside)
            return False
        os.remove(aside)
        return self._create_local(self.holder)

    def acquire(self) -> "OutputLock":
        """Take the lock.

        Raises:
            OutputLocked: another run holds it (live, on another host, or unreadable).
        """
        self.holder = _holder()
        if self.force:
            existing = self._read()
            if existing is not None or self.storage.exists(self.path):
                LOGGER.warning("--force_unlock: removing the lock %s of %s", self.path, existing or "an unknown run")
                self.storage.delete(self.path)
        if not self.local:
            existing = self._read() if self.storage.exists(self.path) else None
            if existing is not None or self.storage.exists(self.path):
                raise _refusal(self.path, existing)
            self.storage.write_bytes(self.path, json.dumps(self.holder).encode())
            return self
        if self._create_local(self.holder):
            return self
        existing = self._read()
        if existing is not None and _is_stale(existing):
            LOGGER.warning("taking over the stale lock %s: its run (pid %s, started %s UTC) is no longer alive",
                           self.path, existing.get("pid"), existing.get("started"))
            if self._take_over_local(existing):
                return self
            existing = self._read()
        raise _refusal(self.path, existing)

    def release(self) -> None:
        """Give the lock back (only if it is still ours)."""
        if self.holder is not None and self._read() == self.holder:
            self.storage.delete(self.path)
        self.holder = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
