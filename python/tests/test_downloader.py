"""zccache.downloader.DownloadApi against the real download daemon and a local HTTP server."""

import hashlib
import http.server
import io
import os
import tarfile
import threading
import time

import pytest

from zccache import ZcCacheError
from zccache.downloader import (
    DaemonNotRunning,
    DownloadApi,
    DownloadDaemonStatus,
    DownloadError,
    DownloadHandle,
    FetchResult,
)


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `files` (name -> bytes), counting GETs; `slow` names are sent in 64 KiB
    pieces with a pause between them."""

    files: dict = {}
    slow: set = set()
    gets: dict = {}

    def do_GET(self):
        name = self.path.lstrip("/")
        type(self).gets[name] = type(self).gets.get(name, 0) + 1
        data = self.files.get(name)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = 64 * 1024
        for start in range(0, len(data), step):
            try:
                self.wfile.write(data[start:start + step])
            except (BrokenPipeError, ConnectionResetError):
                return
            if name in self.slow:
                time.sleep(0.03)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Files", (_Files,), {"files": {}, "slow": set(), "gets": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = lambda name: f"http://127.0.0.1:{httpd.server_address[1]}/{name}"
    httpd.handler = handler
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def api(cache_dir):
    api = DownloadApi(cache_dir=cache_dir)
    yield api
    api.stop()


def test_download_then_cached_then_exists(api, server, tmp_path):
    data = os.urandom(300_000)
    server.handler.files["a.bin"] = data
    dest = tmp_path / "out" / "a.bin"
    assert api.exists(server.url("a.bin"), dest).kind == "absent"
    result = api.download(source_url=server.url("a.bin"), destination=dest)
    assert isinstance(result, FetchResult)
    assert result.status == "downloaded"
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.cache_path == str(dest)
    assert result.bytes == len(data)
    assert dest.read_bytes() == data
    again = api.download(source_url=server.url("a.bin"), destination=dest)
    assert again.status == "cached"
    assert server.handler.gets["a.bin"] == 1
    state = api.exists(source_url=server.url("a.bin"), destination=dest)
    assert (state.kind, state.sha256) == ("cached", result.sha256)
    dest.write_bytes(b"changed")
    assert api.exists(server.url("a.bin"), dest).kind == "stale"
    status = api.daemon_status()
    assert isinstance(status, DownloadDaemonStatus)
    assert status.running and status.pid > 0 and status.completed == 1 and status.cached == 1


def test_unpacks_an_archive_into_expanded(api, server, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = b"int main(void) { return 0; }\n"
        info = tarfile.TarInfo("sdk/main.c")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    server.handler.files["sdk"] = buffer.getvalue()
    result = api.download(
        source_url=server.url("sdk"),
        destination=tmp_path / "sdk.bin",
        expanded=tmp_path / "sdk",
        archive_format="tar.gz",
        multipart_parts=4,
    )
    assert result.expanded_path == str(tmp_path / "sdk")
    assert (tmp_path / "sdk" / "sdk" / "main.c").read_bytes() == payload


def test_errors_are_python_exceptions(api, server, tmp_path):
    server.handler.files["c.bin"] = b"content"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        api.download(server.url("c.bin"), tmp_path / "c.bin", sha256="0" * 64)
    assert not (tmp_path / "c.bin").exists()
    with pytest.raises(DownloadError, match="404"):
        api.download(server.url("missing.bin"), tmp_path / "m.bin")
    with pytest.raises(DownloadError, match="unknown archive format"):
        api.download(server.url("c.bin"), tmp_path / "c.bin", archive_format="rar")
    with pytest.raises(DownloadError, match="no download with id"):
        DownloadHandle(api, 12345).status()
    assert issubclass(DownloadError, ZcCacheError)


def test_a_stopped_daemon_is_reported(cache_dir):
    api = DownloadApi(cache_dir=cache_dir)
    assert api.daemon_status().running is False
    with pytest.raises(DaemonNotRunning):
        DownloadHandle(api, 1).wait(timeout_ms=10)
    assert api.start() is True
    assert api.start() is False
    assert api.daemon_status().running is True
    assert api.stop() is True
    assert api.daemon_status().running is False


def test_attach_wait_cancel_and_resume(api, server, tmp_path):
    data = os.urandom(4 * 1024 * 1024)
    server.handler.files["big.bin"] = data
    server.handler.slow.add("big.bin")
    dest = tmp_path / "big.bin"
    with api.attach(source_url=server.url("big.bin"), destination=dest,
                    max_connections=1) as handle:
        status = handle.wait(timeout_ms=100)
        assert not status.done and status.phase == "downloading"
        assert handle.download_id > 0
        cancelled = handle.cancel()
        assert cancelled.phase == "cancelled"
    assert not dest.exists()
    server.handler.slow.clear()
    result = api.download(server.url("big.bin"), dest)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert dest.read_bytes() == data


def test_concurrent_downloads_of_one_artifact_share_a_transfer(api, server, tmp_path):
    data = os.urandom(2 * 1024 * 1024)
    server.handler.files["shared.bin"] = data
    server.handler.slow.add("shared.bin")
    dest = tmp_path / "shared.bin"
    api.start()
    results = []

    def fetch():
        results.append(api.download(server.url("shared.bin"), dest, max_connections=1))

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    threads[0].start()
    deadline = time.time() + 20
    while api.exists(server.url("shared.bin"), dest).kind != "downloading":
        assert time.time() < deadline
        time.sleep(0.01)
    locked = api.download(server.url("shared.bin"), dest, wait=False)
    assert locked.status == "locked"
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.download_id for r in results} == {results[0].download_id}
    assert all(r.sha256 == hashlib.sha256(data).hexdigest() for r in results)
    assert results[0].detail.attached_clients == 3
    assert server.handler.gets["shared.bin"] == 1
    assert api.daemon_status().shared == 2
