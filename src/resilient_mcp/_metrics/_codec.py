"""
Decoding HdrHistogram's V2 compressed form, without trusting the input.

Encoding is ``hdrh``'s own (see :meth:`LatencyHistogram.encode`); decoding
is not, because ``hdrh`` believes what a payload says about itself.  This
is the one place where bytes from a file or a peer become a histogram.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib

from typing import Final

from hdrh.codec import HdrPayload
from hdrh.histogram import HdrHistogram, get_bucket_count

from .._config import ConfigurationError
from ._layout import Hdr, check_range


MAX_DECODED_COUNTS: Final = 1 << 22  # counters (32 MiB) a payload may ask
_COMPRESSION_COOKIE_BASE: Final = 0x1C849304  # V2 compressed envelope
_ENVELOPE: Final = struct.Struct(">II")  # cookie, compressed length


def decode_hdr(encoded: str | bytes) -> Hdr:
    """
    Decode a base64 V2 compressed histogram, validating every layer.

    ``HdrHistogram.decode`` discards characters outside the base64
    alphabet, checks the payload's declared size with an expression that
    is never true, and allocates whatever counts array the payload asks
    for; this checks each of those first.

    Raises:
        ValueError: *encoded* is not a valid encoded histogram; the
            message says what is wrong with it.
    """
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ValueError(f"not valid base64 ({exc})") from None
    if len(raw) < _ENVELOPE.size:
        raise ValueError("too short to be an encoded histogram")
    cookie, length = _ENVELOPE.unpack_from(raw)
    if cookie & ~0xF0 != _COMPRESSION_COOKIE_BASE:
        raise ValueError(
            f"unknown histogram encoding (cookie {cookie:#010x}; only the "
            "V2 compressed encoding is supported)"
        )
    if length != len(raw) - _ENVELOPE.size:
        raise ValueError(
            f"the payload should be {length} bytes but is "
            f"{len(raw) - _ENVELOPE.size} (truncated?)"
        )
    try:
        payload = HdrPayload(8, compressed_payload=raw[_ENVELOPE.size :])
    except zlib.error as exc:
        raise ValueError(
            f"the compressed payload is corrupt ({exc})"
        ) from None
    except Exception as exc:
        raise ValueError(f"the payload is not a histogram ({exc})") from None
    header = payload.payload
    lowest = int(header.lowest_trackable_value)
    highest = int(header.highest_trackable_value)
    digits = int(header.significant_figures)
    try:
        check_range("histogram", lowest, highest, digits)
    except ConfigurationError as exc:
        raise ValueError(f"impossible settings: {exc}") from None
    sub_buckets = 1 << math.ceil(math.log2(2 * 10**digits))
    buckets = get_bucket_count(highest, sub_buckets, lowest.bit_length() - 1)
    if (buckets + 1) * sub_buckets // 2 > MAX_DECODED_COUNTS:
        raise ValueError(
            f"a range of {lowest} to {highest} at {digits} digits needs "
            f"more than {MAX_DECODED_COUNTS} counters"
        )
    try:
        hdr: Hdr = HdrHistogram(lowest, highest, digits, hdr_payload=payload)
    except Exception as exc:
        raise ValueError(f"the counts are corrupt ({exc})") from None
    return hdr
