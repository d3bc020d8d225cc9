import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zccache._binaries import binary


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private cache root; its daemon is stopped afterwards."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ZCCACHE_CACHE_DIR", str(root))
    yield root
    zccache = binary("zccache")
    if zccache is not None:
        subprocess.run([str(zccache), "stop"], env=dict(os.environ, ZCCACHE_CACHE_DIR=str(root)),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def zccache_bin():
    found = binary("zccache")
    assert found is not None, "zccache is installed with the package"
    return found


def compile_with(zccache_bin, cache_dir, workdir, source, env_extra=None):
    env = dict(os.environ, ZCCACHE_CACHE_DIR=str(cache_dir), **(env_extra or {}))
    return subprocess.run([str(zccache_bin), "gcc", "-c", source, "-o", source + ".o"],
                          cwd=workdir, env=env, capture_output=True, text=True)
