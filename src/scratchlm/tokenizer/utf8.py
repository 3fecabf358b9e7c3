"""Text and UTF-8: decoding bytes read from a corpus (invalid sequences become U+FFFD, counted) and
encoding text for the compiled scanner, the one place each conversion is written."""

from __future__ import annotations

import numpy as np


def decode_utf8(data: bytes) -> tuple[str, int]:
    """Decode UTF-8, replacing invalid sequences with U+FFFD; returns ``(text, number replaced)``.

    >>> decode_utf8(b"ok \\xff!")
    ('ok \\ufffd!', 1)
    """
    text = data.decode("utf-8", errors="replace")  # one pass in C, whatever the number of errors
    # Every U+FFFD is a replacement except those encoded in the input (EF BF BD, always a valid
    # sequence of its own: EF is no continuation byte, so no invalid sequence can swallow it).
    return text, text.count("\ufffd") - data.count(b"\xef\xbf\xbd")


def valid_utf8(data: bytes) -> tuple[bytes, int]:
    """``data`` as valid UTF-8 (invalid sequences replaced by U+FFFD, as ``decode_utf8`` does) and
    the number replaced; valid data, the usual case, is checked by compiled code and not decoded.

    >>> valid_utf8(b"caf\\xc3\\xa9"), valid_utf8(b"ok \\xff!")
    ((b'caf\\xc3\\xa9', 0), (b'ok \\xef\\xbf\\xbd!', 1))
    """
    from scratchlm.tokenizer.scan import first_invalid_utf8

    if data.isascii() or first_invalid_utf8(np.frombuffer(data, dtype=np.uint8)) < 0:
        return data, 0
    text, invalid = decode_utf8(data)
    return text.encode("utf-8"), invalid


def utf8_of(text: str) -> bytes:
    """``text`` as UTF-8, each lone surrogate (which has none) replaced by U+FFFD, as tiktoken does.

    >>> utf8_of("a\\ud800b")
    b'a\\xef\\xbf\\xbdb'
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
