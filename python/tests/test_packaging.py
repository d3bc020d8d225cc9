"""The wheel puts the binaries on the environment's PATH beside the module."""

import subprocess
import sys
from pathlib import Path

import zccache
from zccache._binaries import binary


def test_binaries_are_installed_in_the_environments_bin():
    bindir = Path(sys.executable).parent
    for name in ["zccache", "zccache-daemon", "zccache-ci", "zccache-download"]:
        found = binary(name)
        assert found is not None, name
        assert found.parent == bindir, found


def test_the_module_and_the_binaries_speak_the_same_protocol():
    out = subprocess.run([str(binary("zccache")), "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("zccache ")
    assert zccache.PROTOCOL_VERSION >= 14
    assert issubclass(zccache.ZcCacheError, RuntimeError)


def test_the_wheel_has_a_manylinux_tag():
    from importlib.metadata import distribution

    tags = [line.split(": ", 1)[1] for line in distribution("zccache").read_text("WHEEL").splitlines()
            if line.startswith("Tag: ")]
    assert tags and all("manylinux_2_" in tag and tag.startswith("cp39-abi3-") for tag in tags), tags
