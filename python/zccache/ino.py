"""Arduino sketches as C++ (`zccache ino`)."""

from __future__ import annotations

import os
from typing import List, Union

from zccache import _native

__all__ = ["convert_ino"]


def convert_ino(
    src: Union[str, "os.PathLike[str]"],
    dst: Union[str, "os.PathLike[str]"],
    *,
    arduino_include: bool = True,
) -> List[str]:
    """Writes the sketch `src` as the C++ file `dst` (whole or not at all): `#include
    <Arduino.h>` first (unless the sketch has it or `arduino_include` is False), prototypes for
    the functions it defines further down, and `#line` directives naming `src`. Returns the
    prototypes added. Raises `zccache.ZcCacheError` when `src` cannot be read or `dst`
    written."""
    return _native.convert_ino(os.fspath(src), os.fspath(dst), arduino_include)
