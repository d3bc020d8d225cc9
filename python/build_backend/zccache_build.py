"""The package's build backend: maturin, after the zccache binaries are built.

maturin builds the extension module (`zccache._native`); the binaries (`zccache`,
`zccache-daemon`, `zccache-ci`, `zccache-download`) are built by the project's scripts/build-release.sh (the same
build install.sh and perf.sh use: static, the client linked for the fastest start) and copied
into `zccache.data/scripts`, which a wheel installs into the environment's `bin` directory.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import maturin

HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent
BINARIES = ["zccache", "zccache-daemon", "zccache-ci", "zccache-download"]


def _build_binaries():
    script = REPO / "scripts" / "build-release.sh"
    if not script.is_file():
        raise RuntimeError(f"{script} not found: build the wheel from a zccache checkout")
    built = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    scripts = HERE / "zccache.data" / "scripts"
    if scripts.exists():
        shutil.rmtree(scripts)
    scripts.mkdir(parents=True)
    for name in BINARIES:
        source = Path(built) / name
        if not source.is_file():
            raise RuntimeError(f"{source} was not built")
        shutil.copy2(source, scripts / name)
        os.chmod(scripts / name, 0o755)
        # Release builds keep line tables for profiling; the wheel does without them.
        strip = shutil.which("strip")
        if strip:
            subprocess.run([strip, "--strip-debug", str(scripts / name)], check=True)
    print(f"zccache binaries from {built}", file=sys.stderr)


def _platform_tag(config_settings):
    """maturin tags a wheel built through PEP 517 (pip, build) plain `linux`, which PyPI
    refuses, unless told a compatibility: pass the one pyproject.toml names (maturin checks
    the module's symbol versions against it and fails the build if they are newer) unless the
    caller passed build arguments of their own."""
    settings = dict(config_settings or {})
    if settings.get("maturin.build-args", settings.get("build-args")) is not None:
        return settings
    env_args = os.environ.get("MATURIN_PEP517_ARGS", "")
    if "--compatibility" in env_args or "--manylinux" in env_args:
        return settings
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: maturin depends on tomli there
        import tomli as tomllib
    with open(HERE / "pyproject.toml", "rb") as f:
        compatibility = tomllib.load(f).get("tool", {}).get("maturin", {}).get("compatibility")
    if compatibility:
        settings["maturin.build-args"] = f"{env_args} --compatibility {compatibility}".strip()
    return settings


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _build_binaries()
    return maturin.build_wheel(wheel_directory, _platform_tag(config_settings), metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _build_binaries()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def _data_dir():
    # maturin wants the data directory to exist when it only writes the metadata.
    (HERE / "zccache.data" / "scripts").mkdir(parents=True, exist_ok=True)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _data_dir()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


build_sdist = maturin.build_sdist
get_requires_for_build_wheel = maturin.get_requires_for_build_wheel
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
if hasattr(maturin, "get_requires_for_build_editable"):
    get_requires_for_build_editable = maturin.get_requires_for_build_editable
if hasattr(maturin, "prepare_metadata_for_build_editable"):

    def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
        _data_dir()
        return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)
