"""sha256 of bytes, a file, or a folder: what binds reports, records,
registry entries and packages to the bytes they describe."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: str | Path) -> str:
    """A file's sha256; for a folder, over every file's relative path and
    bytes in sorted order (a SavedModel folder, a deployment's code)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode() + b"\0")
            _update(digest, child)
    else:
        _update(digest, path)
    return digest.hexdigest()


def _update(digest, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
