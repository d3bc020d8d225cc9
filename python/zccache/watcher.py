"""File change notifications: `watch_files(...)` and `FileWatcher`.

The watching, filtering and debouncing run in Rust (`notify`: inotify on Linux); Python is
entered only to hand over a batch of changes, by `poll()` or to a callback.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

from zccache import _native
from zccache._native import ZcCacheError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "FileChange",
    "WatchEvent",
    "FileWatcher",
    "watch_files",
    "FileWatcherProcess",
    "DebouncedFileWatcherProcess",
    "ZcCacheError",
]


@dataclass(frozen=True)
class FileChange:
    #: "created", "modified", "deleted" or "moved" (each side of a rename).
    kind: str
    path: str


@dataclass(frozen=True)
class WatchEvent:
    """One debounced batch of changes."""

    changes: Tuple[FileChange, ...]
    timestamp: float

    @property
    def paths(self) -> List[str]:
        return [change.path for change in self.changes]


def _strings(values: Optional[Iterable[str]]) -> List[str]:
    if values is None:
        return []
    if isinstance(values, (str, os.PathLike)):
        return [os.fspath(values)]
    return [os.fspath(v) for v in values]


class FileWatcher:
    """Watches `root` (or its `include_folders`) for changes to files matching
    `include_globs` (relative to the root; none: every file), leaving out `exclude_globs` /
    `excluded_patterns` (names such as "build" or ".git", or globs such as "dist/**").
    Changes within `debounce_seconds` of each other come as one event.
    `notification_predicate(path)` keeps only the changes it returns true for. With a
    `callback`, a thread polls every `poll_interval` seconds and calls it with each event."""

    def __init__(
        self,
        root: PathLike = ".",
        *,
        include_folders: Optional[Iterable[PathLike]] = None,
        include_globs: Optional[Iterable[str]] = None,
        exclude_globs: Optional[Iterable[str]] = None,
        excluded_patterns: Optional[Iterable[str]] = None,
        debounce_seconds: float = 0.2,
        poll_interval: float = 0.1,
        notification_predicate: Optional[Callable[[str], bool]] = None,
        callback: Optional[Callable[[WatchEvent], None]] = None,
        autostart: bool = True,
    ):
        self.root = Path(os.fspath(root))
        self.poll_interval = poll_interval
        self.notification_predicate = notification_predicate
        self.callback = callback
        excludes = _strings(exclude_globs) + _strings(excluded_patterns)
        self._native = _native.NativeWatcher(
            str(self.root),
            _strings(include_folders),
            _strings(include_globs),
            excludes,
            float(debounce_seconds),
        )
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        if autostart:
            self.start()

    @property
    def running(self) -> bool:
        return self._native.is_running()

    def start(self) -> "FileWatcher":
        """Starts watching (changes from before are not reported)."""
        self._native.start()
        if self.callback is not None and (self._thread is None or not self._thread.is_alive()):
            self._stopping.clear()
            self._thread = threading.Thread(target=self._deliver, name="zccache-watcher", daemon=True)
            self._thread.start()
        return self

    def resume(self) -> "FileWatcher":
        """Starts again after `stop()`."""
        return self.start()

    def stop(self) -> None:
        """Stops watching (changes already seen can still be polled)."""
        self._stopping.set()
        self._native.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    def poll(self, timeout: Optional[float] = None) -> Optional[WatchEvent]:
        """The next batch of changes, or None when none came within `timeout` seconds (None:
        wait until one comes or the watcher stops)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            batch = self._native.poll(left)
            if batch is None:
                return None
            changes = tuple(FileChange(kind, path) for kind, path in batch)
            if self.notification_predicate is not None:
                changes = tuple(c for c in changes if self.notification_predicate(c.path))
            if changes:
                return WatchEvent(changes=changes, timestamp=time.time())
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _deliver(self) -> None:
        while not self._stopping.is_set():
            event = self.poll(self.poll_interval)
            if event is not None and self.callback is not None:
                self.callback(event)

    def __enter__(self) -> "FileWatcher":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __iter__(self):
        while self.running:
            event = self.poll(self.poll_interval)
            if event is not None:
                yield event


def watch_files(root: PathLike = ".", **options) -> FileWatcher:
    """A started `FileWatcher` (see its options)."""
    options.setdefault("autostart", True)
    return FileWatcher(root, **options)


class FileWatcherProcess:
    """fastled-wasm's name: watches `root` less `excluded_patterns`; `get_all_changes()`
    gives the changed paths. No process is started: the watcher runs in Rust threads."""

    def __init__(self, root: PathLike, excluded_patterns: Optional[Iterable[str]] = None) -> None:
        self._watcher = FileWatcher(root, excluded_patterns=excluded_patterns, debounce_seconds=0.0)

    def get_all_changes(self, timeout: Optional[float] = None) -> List[str]:
        """The paths changed since the last call; with `timeout`, waits that long for one."""
        event = self._watcher.poll(timeout if timeout is not None else 0.0)
        return [] if event is None else event.paths

    def stop(self) -> None:
        self._watcher.stop()


class DebouncedFileWatcherProcess:
    """fastled-wasm's name: `watcher`'s changes, handed over once none came for
    `debounce_seconds`, sorted and without repeats."""

    def __init__(self, watcher: FileWatcherProcess, debounce_seconds: float = 0.2) -> None:
        self.watcher = watcher
        self.debounce_seconds = debounce_seconds
        self._seen: List[str] = []
        self._last = 0.0

    def get_all_changes(self, timeout: Optional[float] = None) -> List[str]:
        now = time.monotonic()
        fresh = self.watcher.get_all_changes(timeout=timeout)
        if fresh:
            self._seen.extend(fresh)
            self._last = now
            return []
        if self._seen and now - self._last >= self.debounce_seconds:
            batch = sorted(set(self._seen))
            self._seen.clear()
            return batch
        return []

    def stop(self) -> None:
        self.watcher.stop()
