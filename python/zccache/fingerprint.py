"""Whether a step's input files changed since it last succeeded (`zccache fp`).

`FingerprintCache(path)` keeps its state in `path`, the same file `zccache fp --cache-file`
uses, with the same answers: a check says run when the selected files differ from the last
success (or none is recorded) and remembers what it saw; `mark_success()` makes that the
state to compare with, `mark_failure()` forgets it, `invalidate()` forgets everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Union

from zccache import _native
from zccache._native import ZcCacheError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["FingerprintCache", "FingerprintDecision", "ZcCacheError"]

CACHE_TYPES = ("two-layer", "hash")


@dataclass(frozen=True)
class FingerprintDecision:
    """A check's answer."""

    should_run: bool
    #: Files (relative to the root) added, changed or removed since the last success; every
    #: selected file when none is recorded.
    changed_files: List[str] = field(default_factory=list)
    #: No success is recorded for this root.
    first_run: bool = False

    @property
    def reason(self) -> str:
        if not self.should_run:
            return "no changes"
        if self.first_run:
            return "no success recorded"
        return f"{len(self.changed_files)} file(s) changed"

    def __bool__(self) -> bool:
        return self.should_run


def _list(values: Optional[Iterable[str]]) -> List[str]:
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return [str(v) for v in values]


class FingerprintCache:
    """The fingerprint state in `path`; `cache_type` "two-layer" (stat first, content of the
    files whose stat changed) or "hash" (every file's content every time)."""

    def __init__(self, path: PathLike, cache_type: str = "two-layer"):
        if cache_type not in CACHE_TYPES:
            raise ZcCacheError(f'cache_type {cache_type!r}: expected "two-layer" or "hash"')
        self.path = Path(os.fspath(path)).absolute()
        self.cache_type = cache_type

    def check(
        self,
        root: PathLike = ".",
        include: Optional[Iterable[str]] = None,
        exclude: Optional[Iterable[str]] = None,
        ext: Optional[Iterable[str]] = None,
    ) -> FingerprintDecision:
        """Compares the files under `root` selected by `include` (globs relative to the root;
        none: every file) or `ext` (extensions), less `exclude` (names or globs), with the last
        success."""
        include, ext = _list(include), _list(ext)
        if include and ext:
            raise ZcCacheError("include and ext cannot be given together")
        changed, files, first = _native.fp_check(
            str(self.path),
            self.cache_type,
            str(Path(os.fspath(root)).absolute()),
            include,
            _list(exclude),
            ext,
        )
        return FingerprintDecision(should_run=changed, changed_files=list(files), first_run=first)

    def mark_success(self) -> bool:
        """The step succeeded on what the last check saw; False when no check was pending."""
        return _native.fp_mark_success(str(self.path))

    def mark_failure(self) -> None:
        """The step failed: the next check says run."""
        _native.fp_mark_failure(str(self.path))

    def invalidate(self) -> None:
        """Forgets every state: the next check says run."""
        _native.fp_invalidate(str(self.path))
