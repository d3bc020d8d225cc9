"""The zccache daemon from Python: start, stop, status and sessions.

Every call goes to the daemon over its socket through the same Rust code as the `zccache`
command (no process per call). Answers are dataclasses with the fields of the command's
`--json` output; failures raise `zccache.ZcCacheError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, Union

from zccache import _native
from zccache._binaries import binary
from zccache._native import ZcCacheError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["ZcCacheClient", "DaemonStatus", "SessionStartResult", "SessionStats", "ZcCacheError"]


def _pairs(value) -> list[tuple[str, int]]:
    return [(str(reason), int(count)) for reason, count in (value or [])]


@dataclass(frozen=True)
class DaemonStatus:
    """`zccache status --json`."""

    running: bool
    cache_root: str
    version: str = ""
    pid: int = 0
    uptime_secs: int = 0
    hits: int = 0
    worktree_hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    errors: int = 0
    time_saved_ms: int = 0
    not_stored: list = field(default_factory=list)
    non_cacheable: list = field(default_factory=list)
    worktree_fallbacks: list = field(default_factory=list)
    queries_answered: int = 0
    queries_run: int = 0
    artifact_count: int = 0
    artifact_bytes: int = 0
    max_size: int = 0
    evictions: int = 0
    watching: Optional[tuple] = None
    warnings: list = field(default_factory=list)
    remote: Optional[str] = None
    remote_hits: int = 0
    remote_misses: int = 0
    remote_errors: int = 0
    remote_corrupt: int = 0
    remote_uploads: int = 0
    remote_dropped: int = 0
    remote_bytes_down: int = 0
    remote_bytes_up: int = 0
    remote_latency_us: int = 0
    #: Why no daemon can run for this cache root (when `running` is false and it is known).
    problem: Optional[str] = None


@dataclass(frozen=True)
class SessionStartResult:
    """`zccache session-start --json`."""

    session_id: str
    journal_path: Optional[str] = None
    log_path: Optional[str] = None


@dataclass(frozen=True)
class SessionStats:
    """`zccache session-stats --json` (and `session-end`)."""

    id: str
    started_at: int = 0
    duration_ms: int = 0
    hits: int = 0
    worktree_hits: int = 0
    misses: int = 0
    remote_hits: int = 0
    remote_misses: int = 0
    hit_rate: float = 0.0
    not_stored: list = field(default_factory=list)
    non_cacheable: list = field(default_factory=list)
    worktree_fallbacks: list = field(default_factory=list)
    errors: int = 0
    time_saved_ms: int = 0
    journal_path: Optional[str] = None
    log_path: Optional[str] = None
    ended: bool = False
    expired: Optional[str] = None


def _build(kind, text: str):
    data = json.loads(text)
    known = {f.name for f in fields(kind)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("not_stored", "non_cacheable", "worktree_fallbacks"):
        if name in values:
            values[name] = _pairs(values[name])
    if values.get("watching") is not None:
        values["watching"] = tuple(values["watching"])
    return kind(**values)


class ZcCacheClient:
    """The daemon of one cache root: `cache_dir`, else `ZCCACHE_CACHE_DIR`, else
    `~/.zccache` (as the command resolves it)."""

    def __init__(self, cache_dir: Optional[PathLike] = None, daemon: Optional[PathLike] = None):
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        found = daemon if daemon is not None else binary("zccache-daemon")
        self._daemon = os.fspath(found) if found is not None else None

    def start(self) -> bool:
        """Starts the daemon unless one runs; True once it answers."""
        if self._daemon is None:
            raise ZcCacheError("zccache-daemon not found beside this Python or on PATH")
        return _native.start(self.cache_dir, self._daemon)

    def stop(self) -> bool:
        """Stops the daemon (its results stored, uploads flushed); False if none ran."""
        return _native.stop(self.cache_dir)

    def status(self) -> DaemonStatus:
        """The daemon's counters; `running=False` (and why, if known) when none runs."""
        return _build(DaemonStatus, _native.status(self.cache_dir))

    def session_start(
        self,
        cwd: Optional[PathLike] = None,
        track_stats: bool = True,
        journal: Optional[PathLike] = None,
        log: Optional[PathLike] = None,
    ) -> SessionStartResult:
        """Starts a session (and the daemon if needed). Compiles whose environment has
        `ZCCACHE_SESSION_ID` set to its id are counted to it. `journal` (a `.jsonl` file) and
        `log` are resolved against `cwd`; the session belongs to this process."""
        base = Path(os.fspath(cwd)) if cwd is not None else Path.cwd()

        def absolute(path):
            if path is None:
                return None
            path = Path(os.fspath(path))
            return str(path if path.is_absolute() else base / path)

        journal, log = absolute(journal), absolute(log)
        if journal is not None and not journal.endswith(".jsonl"):
            raise ZcCacheError(f"session journal {journal} must end in .jsonl")
        if self._daemon is None:
            raise ZcCacheError("zccache-daemon not found beside this Python or on PATH")
        # Every session counts its compiles; `track_stats` is accepted for compatibility.
        del track_stats
        session_id = _native.session_start(os.getpid(), journal, log, self.cache_dir, self._daemon)
        return SessionStartResult(session_id=session_id, journal_path=journal, log_path=log)

    def session_stats(self, session_id: str) -> SessionStats:
        """The session's counters so far."""
        return _build(SessionStats, _native.session_report(session_id, False, self.cache_dir))

    def session_end(self, session_id: str) -> SessionStats:
        """Ends the session; its final counters."""
        return _build(SessionStats, _native.session_report(session_id, True, self.cache_dir))
