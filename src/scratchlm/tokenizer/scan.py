"""GPT-2 pre-tokens found by a compiled scanner over UTF-8 bytes (numba), shared by the counter
(``fast_count``) and the encoder (``fast_encode``).

GPT-2's pattern tries its alternatives in order at each position; over code points classed as
letter (``\\p{L}``), number (``\\p{N}``), whitespace (``\\s``) or other, it is a small scanner:

* ``'`` followed by ``s d m t`` or ``ll ve re``: a contraction;
* a space followed by a letter, number or other, or such a code point: a run of that class,
  with the space in front;
* whitespace: the whole run at the end of the text, else all of it but its last code point when
  it has two or more, else that one (a space before a non-space went with the run after it).

The scanner reads UTF-8 (what BPE works on), so text is never widened to code points. The
classes come from the ``regex`` module itself (the engine GPT2_REGEX uses): computed once per
``regex`` version and kept beside numba's own cache. Hypothesis tests check the scanner against
the regex on text over every Unicode plane.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import regex
from scratchlm.tokenizer.compiled import njit

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
_CACHE_DIR = Path(__file__).resolve().parent / "__pycache__"


def _classes_from_regex() -> np.ndarray:
    classes = np.zeros(0x110000, dtype=np.uint8)
    code_points = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)])  # no surrogates
    every = "".join(map(chr, code_points.tolist()))
    for kind, pattern in ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+")):
        for match in regex.finditer(pattern, every):
            classes[code_points[match.start():match.end()]] = kind
    return classes


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """The class of every code point (uint8, 0x110000 entries), by the ``regex`` module's ``\\p{L}``,
    ``\\p{N}`` and ``\\s``: read from a file kept per ``regex`` version (made in about 0.2 s)."""
    path = _CACHE_DIR / f"code_point_classes.regex-{regex.__version__}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    classes = _classes_from_regex()
    try:  # a read-only install computes it once per process instead
        _CACHE_DIR.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=_CACHE_DIR, suffix=".npy", delete=False) as handle:
            np.save(handle, classes)
        os.replace(handle.name, path)
    except OSError:
        pass
    return classes


@njit(cache=True, inline="always")
def code_point_at(data, at):
    """The code point starting at byte ``at`` of valid UTF-8 ``data``, and its length in bytes."""
    lead = np.int64(data[at])
    if lead < 0x80:
        return lead, 1
    if lead < 0xE0:
        return ((lead & 0x1F) << 6) | (data[at + 1] & 0x3F), 2
    if lead < 0xF0:
        return ((lead & 0x0F) << 12) | ((data[at + 1] & 0x3F) << 6) | (data[at + 2] & 0x3F), 3
    return (((lead & 0x07) << 18) | ((data[at + 1] & 0x3F) << 12) | ((data[at + 2] & 0x3F) << 6)
            | (data[at + 3] & 0x3F)), 4


@njit(cache=True, inline="always")
def _run_end(data, at, end, classes, kind):
    """End of the run of ``kind`` code points from ``at``, and where its last code point starts."""
    last = at
    while at < end:
        code, width = code_point_at(data, at)
        if classes[code] != kind:
            break
        last = at
        at += width
    return at, last


@njit(cache=True)
def token_end(data, at, end, classes):
    """Where the pre-token starting at byte ``at`` ends (``end``: the end of the piece)."""
    first = data[at]
    if first == 39 and at + 1 < end:  # ' : contractions first, as in the pattern
        second = data[at + 1]
        if second == 115 or second == 100 or second == 109 or second == 116:  # s d m t
            return at + 2
        if at + 2 < end:
            third = data[at + 2]
            if (second == 108 and third == 108) or (second == 118 and third == 101) or (second == 114 and third == 101):
                return at + 3  # ll ve re
    if first == 32 and at + 1 < end:
        code, width = code_point_at(data, at + 1)
        kind = classes[code]
        if kind != SPACE:
            return _run_end(data, at + 1 + width, end, classes, kind)[0]
    code, width = code_point_at(data, at)
    kind = classes[code]
    if kind != SPACE:
        return _run_end(data, at + width, end, classes, kind)[0]
    run_end, last = _run_end(data, at + width, end, classes, SPACE)
    if run_end == end or run_end == at + width:
        return run_end
    return last


@njit(cache=True, exports=[(("u1[:]",), "i8")])
def first_invalid_utf8(data):
    """Where the first invalid UTF-8 sequence of ``data`` (uint8) starts, or -1 if it is all valid
    (the rules of Python's decoder: no overlong forms, surrogates, or code points past U+10FFFF)."""
    at, n = 0, len(data)
    while at < n:
        lead = data[at]
        if lead < 0x80:
            at += 1
            continue
        if 0xC2 <= lead <= 0xDF:
            size, low, high = 2, 0x80, 0xBF
        elif 0xE0 <= lead <= 0xEF:
            size = 3
            low, high = (0xA0, 0xBF) if lead == 0xE0 else (0x80, 0x9F) if lead == 0xED else (0x80, 0xBF)
        elif 0xF0 <= lead <= 0xF4:
            size = 4
            low, high = (0x90, 0xBF) if lead == 0xF0 else (0x80, 0x8F) if lead == 0xF4 else (0x80, 0xBF)
        else:
            return at
        if at + size > n or not low <= data[at + 1] <= high:
            return at
        for k in range(2, size):
            if not 0x80 <= data[at + k] <= 0xBF:
                return at
        at += size
    return -1
