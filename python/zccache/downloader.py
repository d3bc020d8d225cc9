"""The download daemon from Python.

`DownloadApi` talks to the cache root's download daemon (`zccache-download`, installed with
this package) over its socket through the same Rust client as `zccache download` (no
process per call). Several callers asking for the same artifact share one transfer; a
second request for a published artifact is answered from the daemon's records without a
transfer. Answers are dataclasses with the fields of `zccache-download --json`; failures
raise `DownloadError` (a `zccache.ZcCacheError`), `DaemonNotRunning` when a call needs a
running daemon and none runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

from zccache import _native
from zccache._binaries import binary
from zccache._native import DaemonNotRunning, DownloadError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "DownloadApi",
    "DownloadHandle",
    "DownloadStatus",
    "DownloadDaemonStatus",
    "FetchResult",
    "FetchState",
    "DownloadError",
    "DaemonNotRunning",
]


@dataclass(frozen=True)
class DownloadStatus:
    """A transfer as the daemon sees it (`zccache-download --json status ID`)."""

    download_id: int
    phase: str  # downloading, unarchiving, done, failed, cancelled
    status: str  # downloaded, cached, expanded, locked, would_download, in_progress, failed, cancelled
    source_url: str
    cache_path: str
    expanded_path: Optional[str] = None
    downloaded_bytes: int = 0
    total_bytes: Optional[int] = None
    resumed_bytes: int = 0
    connections: int = 0
    attached_clients: int = 1
    sha256: Optional[str] = None
    error: Optional[str] = None
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.phase in ("done", "failed", "cancelled")


@dataclass(frozen=True)
class FetchResult:
    """What a blocking download produced."""

    status: str
    sha256: str
    cache_path: str
    expanded_path: Optional[str]
    bytes: int
    download_id: int
    detail: DownloadStatus


@dataclass(frozen=True)
class FetchState:
    """What is at a destination (`exists`): kind is absent, cached, partial, downloading or
    stale."""

    kind: str
    reason: str
    cache_path: str
    sha256: Optional[str] = None
    bytes: Optional[int] = None


@dataclass(frozen=True)
class DownloadDaemonStatus:
    """`zccache-download --json daemon status`."""

    running: bool
    socket: str = ""
    pid: int = 0
    version: str = ""
    uptime_secs: int = 0
    active: int = 0
    started: int = 0
    shared: int = 0
    completed: int = 0
    failed: int = 0
    cached: int = 0
    bytes_downloaded: int = 0


def _build(kind, text: str):
    data = json.loads(text)
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known})


def _status(text: str) -> DownloadStatus:
    return _build(DownloadStatus, text)


def _path(value: Optional[PathLike]) -> Optional[str]:
    return os.fspath(value) if value is not None else None


class DownloadHandle:
    """A transfer running in the daemon, followed by id. As a context manager it only
    detaches: the transfer goes on for every other client (use `cancel()` to stop it)."""

    def __init__(self, api: "DownloadApi", download_id: int):
        self._api = api
        self.download_id = download_id

    def status(self) -> DownloadStatus:
        return _status(_native.dl_handle("status", self.download_id, None, self._api.cache_dir))

    def wait(self, timeout_ms: Optional[int] = None) -> DownloadStatus:
        """Waits until the transfer ends or `timeout_ms` passes; its status then (check
        `.done`)."""
        return _status(
            _native.dl_handle("wait", self.download_id, timeout_ms, self._api.cache_dir)
        )

    def cancel(self) -> DownloadStatus:
        """Cancels the transfer for every client attached to it; the part written stays for
        a later download to resume."""
        return _status(_native.dl_handle("cancel", self.download_id, None, self._api.cache_dir))

    def __enter__(self) -> "DownloadHandle":
        return self

    def __exit__(self, *exc) -> None:
        return None


class DownloadApi:
    """The download daemon of one cache root: `cache_dir`, else `ZCCACHE_CACHE_DIR`, else
    `~/.zccache`."""

    def __init__(self, cache_dir: Optional[PathLike] = None, daemon: Optional[PathLike] = None):
        self.cache_dir = _path(cache_dir)
        found = daemon if daemon is not None else binary("zccache-download")
        self._daemon = _path(found)

    def _daemon_binary(self) -> str:
        if self._daemon is None:
            raise DownloadError("zccache-download not found beside this Python or on PATH")
        return self._daemon

    def start(self) -> bool:
        """Starts the download daemon unless it runs; True when this call started it."""
        return _native.dl_start(self.cache_dir, self._daemon_binary())

    def stop(self) -> bool:
        """Stops the daemon (running transfers stop and resume on the next request); False
        when none ran."""
        return _native.dl_stop(self.cache_dir)

    def daemon_status(self) -> DownloadDaemonStatus:
        return _build(DownloadDaemonStatus, _native.dl_daemon_status(self.cache_dir))

    def _fetch(self, source_url: str, destination, *, background: bool, wait: bool = True,
               expanded=None, archive_format: str = "auto", sha256: Optional[str] = None,
               part_urls: Sequence[str] = (), max_connections: Optional[int] = None,
               min_segment_size: Optional[int] = None, multipart_parts: Optional[int] = None,
               force: bool = False, dry_run: bool = False) -> DownloadStatus:
        return _status(_native.dl_fetch(
            source_url or "", _path(destination), list(part_urls), _path(expanded),
            archive_format, sha256, max_connections, min_segment_size, multipart_parts,
            wait, force, dry_run, background, self.cache_dir, self._daemon_binary(),
        ))

    def download(self, source_url: str = "", destination: Optional[PathLike] = None, *,
                 expanded: Optional[PathLike] = None, archive_format: str = "auto",
                 sha256: Optional[str] = None, part_urls: Sequence[str] = (),
                 max_connections: Optional[int] = None, min_segment_size: Optional[int] = None,
                 multipart_parts: Optional[int] = None, wait: bool = True, force: bool = False,
                 dry_run: bool = False) -> FetchResult:
        """Downloads `source_url` (or the concatenated `part_urls`) to `destination` (default:
        a path under the cache root chosen from the URL), unpacks it into `expanded` if given,
        and returns once it is published. `wait=False` returns at once with status `locked`
        when another client's transfer of it runs. Raises `DownloadError` when it fails (a
        checksum mismatch publishes nothing)."""
        status = self._fetch(source_url, destination, background=False, wait=wait,
                             expanded=expanded, archive_format=archive_format, sha256=sha256,
                             part_urls=part_urls, max_connections=max_connections,
                             min_segment_size=min_segment_size,
                             multipart_parts=multipart_parts, force=force, dry_run=dry_run)
        return FetchResult(
            status=status.status,
            sha256=status.sha256 or "",
            cache_path=status.cache_path,
            expanded_path=status.expanded_path,
            bytes=status.total_bytes if status.total_bytes is not None else status.downloaded_bytes,
            download_id=status.download_id,
            detail=status,
        )

    def fetch(self, source_url: str = "", destination: Optional[PathLike] = None, *,
              block: bool = True, **options) -> Union[FetchResult, DownloadHandle]:
        """`download(...)` when `block`, else `attach(...)`: a handle to a transfer running in
        the background."""
        if block:
            return self.download(source_url, destination, **options)
        return self.attach(source_url, destination, **options)

    def attach(self, source_url: str = "", destination: Optional[PathLike] = None,
               **options) -> DownloadHandle:
        """Starts the download, or joins the one running for `destination`, and returns a
        handle at once."""
        status = self._fetch(source_url, destination, background=True, **options)
        return DownloadHandle(self, status.download_id)

    def exists(self, source_url: str, destination: PathLike) -> FetchState:
        """What is at `destination` for `source_url`: absent, cached (downloaded from it and
        unchanged), partial (resumable), downloading, or stale. Works without a daemon."""
        return _build(FetchState, _native.dl_exists(source_url, os.fspath(destination),
                                                     self.cache_dir))
