"""FingerprintCache: the answers and the state file of `zccache fp`."""

import os
import subprocess
import time

import pytest

from zccache import ZcCacheError
from zccache._binaries import binary
from zccache.fingerprint import FingerprintCache


def tree(tmp_path):
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.cpp").write_text("int a;\n")
    (root / "sub" / "b.hpp").write_text("int b;\n")
    (root / "build").mkdir()
    (root / "build" / "out.cpp").write_text("generated\n")
    return root


def test_run_then_skip_then_the_changed_file(tmp_path):
    root = tree(tmp_path)
    fp = FingerprintCache(tmp_path / "state.json")
    kwargs = dict(root=root, include=["**/*.cpp", "**/*.hpp"], exclude=["build"])
    first = fp.check(**kwargs)
    assert first.should_run and first.first_run
    assert first.changed_files == ["a.cpp", "sub/b.hpp"]
    assert fp.mark_success() is True
    again = fp.check(**kwargs)
    assert not again.should_run and again.changed_files == [] and again.reason == "no changes"
    # Excluded and unselected files do not count.
    (root / "build" / "out.cpp").write_text("regenerated\n")
    (root / "notes.txt").write_text("x\n")
    assert not fp.check(**kwargs).should_run
    (root / "sub" / "b.hpp").write_text("int b = 2;\n")
    (root / "c.cpp").write_text("int c;\n")
    changed = fp.check(**kwargs)
    assert changed.should_run and not changed.first_run
    assert changed.changed_files == ["c.cpp", "sub/b.hpp"]
    # A failure forgets the pending state: still run next time.
    fp.mark_failure()
    assert fp.check(**kwargs).should_run
    fp.mark_success()
    (root / "a.cpp").unlink()
    assert fp.check(**kwargs).changed_files == ["a.cpp"]
    fp.invalidate()
    assert fp.check(**kwargs).first_run


def test_the_state_file_is_the_commands(tmp_path):
    root = tree(tmp_path)
    state = tmp_path / "state.json"
    fp = FingerprintCache(state, cache_type="hash")
    fp.check(root=root, ext=["cpp"])
    fp.mark_success()
    env = dict(os.environ, ZCCACHE_CACHE_DIR=str(tmp_path / "cache"))
    command = [str(binary("zccache")), "fp", "--cache-file", str(state), "--cache-type", "hash",
               "check", "--root", str(root), "--ext", "cpp"]
    skip = subprocess.run(command, env=env, capture_output=True, text=True)
    assert skip.returncode == 1, skip.stderr  # 1 = skip
    (root / "a.cpp").write_text("int a = 1;\n")
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    subprocess.run([str(binary("zccache")), "fp", "--cache-file", str(state), "mark-success"], env=env, check=True)
    assert not fp.check(root=root, ext=["cpp"]).should_run


def test_mistakes_are_errors(tmp_path):
    with pytest.raises(ZcCacheError, match="cache_type"):
        FingerprintCache(tmp_path / "s.json", cache_type="fast")
    fp = FingerprintCache(tmp_path / "s.json")
    with pytest.raises(ZcCacheError, match="together"):
        fp.check(root=tmp_path, include=["*.c"], ext=["c"])
    with pytest.raises(ZcCacheError):
        fp.check(root=tmp_path, include=["[unclosed"])
    assert fp.mark_success() is False
