"""``njit`` for the compiled tokenizer modules, with their on-disk cache kept honest.

numba's cache (``cache=True``) checks only the file that defines a function, yet our functions
inline others from sibling modules (the scanner, the hash table): after a change to
``scan.py`` alone, a cached ``fast_encode`` would run the old scanner. So when any of these
modules' sources differ from those the cache was built from, their cached code is dropped once
(a git pull or an edit then costs one compile, about 15 s, instead of wrong ids).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba
from numba import njit

__all__ = ["njit"]

COMPILED_MODULES = ("scan", "byte_table", "fast_bpe", "fast_encode", "fast_decode", "fast_count", "fast_merge")
_HERE = Path(__file__).resolve().parent
_CACHE = _HERE / "__pycache__"


def sources_fingerprint() -> str:
    """A digest of the compiled modules' sources and of numba's version."""
    digest = hashlib.sha256(numba.__version__.encode())
    for name in COMPILED_MODULES:
        digest.update((_HERE / f"{name}.py").read_bytes())
    return digest.hexdigest()


def drop_stale_cache(cache_dir: Path = _CACHE) -> bool:
    """Delete the cached machine code of the compiled modules if it was built from other sources;
    True if it was."""
    stamp, fingerprint = cache_dir / "compiled-sources.sha256", sources_fingerprint()
    try:
        if stamp.read_text() == fingerprint:
            return False
    except OSError:
        pass
    try:
        cache_dir.mkdir(exist_ok=True)
        for path in cache_dir.iterdir():
            if path.suffix in (".nbi", ".nbc") and path.name.split(".")[0] in COMPILED_MODULES:
                path.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_dir, delete=False) as handle:
            handle.write(fingerprint)
        os.replace(handle.name, stamp)
    except OSError:  # a read-only install: numba keeps its cache elsewhere, rebuilt per version
        return False
    return True


drop_stale_cache()
