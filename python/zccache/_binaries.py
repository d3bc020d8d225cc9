"""Where this installation's binaries are."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path


def binary(name: str) -> Path | None:
    """`name` as installed with this package (the environment's scripts directory), else on
    PATH; None when neither has it."""
    for scheme_dir in {sysconfig.get_path("scripts"), os.path.dirname(sys.executable)}:
        if scheme_dir:
            candidate = Path(scheme_dir) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    return Path(found) if found else None
