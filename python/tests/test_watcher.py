"""zccache.watcher against real file system events."""

import os
import threading
import time

import pytest

from zccache import ZcCacheError
from zccache.watcher import DebouncedFileWatcherProcess, FileWatcher, FileWatcherProcess, watch_files


def project(tmp_path):
    for rel in ["src/a.cpp", "src/b.h", "include/c.h", "build/gen.cpp", "docs/x.md"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0\n")
    return tmp_path


def kinds(event, root):
    assert event is not None, "no event within the timeout"
    real = os.path.realpath(root)
    return {(c.kind, os.path.relpath(c.path, real)) for c in event.changes}


def test_create_modify_delete_rename_under_included_globs(tmp_path):
    root = project(tmp_path)
    with watch_files(root, include_globs=["src/**/*.cpp", "src/**/*.h", "include/**"],
                     exclude_globs=["build"], debounce_seconds=0.05) as watcher:
        (root / "src" / "new.cpp").write_text("1\n")
        (root / "build" / "gen.cpp").write_text("excluded\n")
        (root / "docs" / "x.md").write_text("not included\n")
        assert kinds(watcher.poll(timeout=5), root) == {("created", "src/new.cpp")}
        (root / "src" / "a.cpp").write_text("2\n")
        assert kinds(watcher.poll(timeout=5), root) == {("modified", "src/a.cpp")}
        (root / "include" / "c.h").unlink()
        assert kinds(watcher.poll(timeout=5), root) == {("deleted", "include/c.h")}
        os.rename(root / "src" / "b.h", root / "src" / "renamed.h")
        assert kinds(watcher.poll(timeout=5), root) == {("moved", "src/b.h"), ("moved", "src/renamed.h")}
        assert watcher.poll(timeout=0.2) is None


def test_a_burst_is_one_event(tmp_path):
    root = project(tmp_path)
    watcher = FileWatcher(root, include_globs=["**/*.cpp"], excluded_patterns=["build"], debounce_seconds=0.3)
    try:
        for i in range(20):
            (root / "src" / f"burst{i}.cpp").write_text(str(i))
            time.sleep(0.01)
        event = watcher.poll(timeout=5)
        assert event is not None and len(event.paths) == 20
        assert watcher.poll(timeout=0.5) is None
    finally:
        watcher.stop()


def test_stop_resume_predicate_and_callback(tmp_path):
    root = project(tmp_path)
    seen = []
    got = threading.Event()

    def callback(event):
        seen.extend(event.paths)
        got.set()

    watcher = FileWatcher(root, include_folders=["src"], debounce_seconds=0.05, poll_interval=0.05,
                          notification_predicate=lambda p: not p.endswith(".h"), callback=callback,
                          autostart=False)
    assert not watcher.running
    watcher.start()
    (root / "src" / "skip.h").write_text("h\n")
    (root / "src" / "keep.cpp").write_text("c\n")
    (root / "include" / "outside.cpp").write_text("not a watched folder\n")
    assert got.wait(5)
    time.sleep(0.3)
    assert [os.path.basename(p) for p in seen] == ["keep.cpp"]
    watcher.stop()
    assert not watcher.running
    (root / "src" / "while-stopped.cpp").write_text("x\n")
    got.clear()
    seen.clear()
    watcher.resume()
    (root / "src" / "after.cpp").write_text("y\n")
    assert got.wait(5)
    watcher.stop()
    assert [os.path.basename(p) for p in seen] == ["after.cpp"]


def test_fastled_names(tmp_path):
    root = project(tmp_path)
    raw = FileWatcherProcess(root, excluded_patterns=["build"])
    debounced = DebouncedFileWatcherProcess(raw, debounce_seconds=0.1)
    (root / "src" / "a.cpp").write_text("changed\n")
    (root / "build" / "gen.cpp").write_text("excluded\n")
    deadline = time.monotonic() + 5
    batch = []
    while not batch and time.monotonic() < deadline:
        batch = debounced.get_all_changes(timeout=0.05)
    debounced.stop()
    assert [os.path.relpath(p, os.path.realpath(root)) for p in batch] == ["src/a.cpp"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ZcCacheError, match="missing"):
        FileWatcher(tmp_path / "missing")
    with pytest.raises(ZcCacheError, match="glob"):
        FileWatcher(tmp_path, include_globs=["[unclosed"])
