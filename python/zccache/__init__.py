"""zccache: a compiler cache for C/C++, Rust and analysers.

The binaries (`zccache`, `zccache-daemon`, `zccache-ci`, `zccache-download`) are installed beside this package's
environment; this module talks to the same daemon over its socket:

- `zccache.client.ZcCacheClient`: start, stop, status and sessions;
- `zccache.ino.convert_ino`: an Arduino sketch as C++;
- `zccache.fingerprint.FingerprintCache`: "did anything change since the last success?";
- `zccache.watcher`: file watching with the scan and notify loop in Rust;
- `zccache.downloader.DownloadApi`: the download daemon (shared, resumable, verified).
"""

from zccache._native import PROTOCOL_VERSION, ZcCacheError

__all__ = ["PROTOCOL_VERSION", "ZcCacheError", "__version__"]
__version__ = "0.1.0"
