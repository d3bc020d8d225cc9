"""ZcCacheClient against the real daemon and gcc."""

import pytest

from conftest import compile_with
from zccache import ZcCacheError
from zccache.client import DaemonStatus, SessionStats, ZcCacheClient


def test_status_of_a_root_without_a_daemon_says_not_running(cache_dir):
    status = ZcCacheClient().status()
    assert isinstance(status, DaemonStatus)
    assert status.running is False
    assert status.cache_root == str(cache_dir)


def test_start_compile_status_stop(cache_dir, zccache_bin, tmp_path):
    client = ZcCacheClient(cache_dir=cache_dir)
    assert client.start() is True
    running = client.status()
    assert running.running and running.pid > 0 and running.hits == 0
    (tmp_path / "a.c").write_text("int a(int x) { return x * 7; }\n")
    for _ in range(2):
        done = compile_with(zccache_bin, cache_dir, tmp_path, "a.c")
        assert done.returncode == 0, done.stderr
    status = client.status()
    assert (status.hits, status.misses) == (1, 1)
    assert status.hit_rate == 50.0
    assert status.artifact_count >= 1
    assert client.stop() is True
    assert client.status().running is False
    assert client.stop() is False


def test_sessions_count_their_compiles(cache_dir, zccache_bin, tmp_path):
    client = ZcCacheClient(cache_dir=cache_dir)
    started = client.session_start(cwd=tmp_path, track_stats=True, journal="build.jsonl")
    assert started.journal_path == str(tmp_path / "build.jsonl")
    (tmp_path / "s.c").write_text("int s(void) { return 3; }\n")
    for _ in range(3):
        done = compile_with(zccache_bin, cache_dir, tmp_path, "s.c",
                            {"ZCCACHE_SESSION_ID": started.session_id})
        assert done.returncode == 0, done.stderr
    mid = client.session_stats(started.session_id)
    assert isinstance(mid, SessionStats)
    assert (mid.hits, mid.misses, mid.ended) == (2, 1, False)
    end = client.session_end(started.session_id)
    assert end.ended and end.hits == 2
    assert (tmp_path / "build.jsonl").read_text().count("\n") == 3
    # An ended session is remembered for a while; an unknown one is an error.
    with pytest.raises(ZcCacheError, match="no-such-session"):
        client.session_stats("no-such-session")


def test_bad_arguments_are_clear_errors(cache_dir, tmp_path):
    client = ZcCacheClient(cache_dir=cache_dir)
    with pytest.raises(ZcCacheError, match=r"must end in \.jsonl"):
        client.session_start(cwd=tmp_path, journal="build.json")
    with pytest.raises(ZcCacheError, match="not found"):
        ZcCacheClient(cache_dir=cache_dir, daemon=tmp_path / "no-daemon").start()
