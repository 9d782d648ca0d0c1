"""What can be said of a frame before decoding it: whether its size is within the limit,
and (for an error reply that must reach the caller) the request id in its first bytes."""

from __future__ import annotations

from collections.abc import Container

from transport.errors import BadFrame
from transport.payloads import MAX_FRAME_BYTES


def check_size(frame: bytes, request_tags: Container[str] = ()) -> None:
    """Raise BadFrame ("too_large") for a frame over the protocol's size limit, with the
    request id of a frame tagged as one of ``request_tags``."""
    if len(frame) > MAX_FRAME_BYTES:
        raise BadFrame(
            "too_large",
            f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
            request_id_of(frame, request_tags),
        )


def request_id_of(frame: bytes, request_tags: Container[str]) -> int:
    """Best effort, without decoding the frame: the request id of a frame that was
    refused, so the error reply reaches the caller waiting on it. Requests are msgpack
    arrays ``[tag, request_id, ...]``; only their first bytes are read. 0 unless the tag
    is one of ``request_tags``: another message's first field (a hello's protocol
    version, say) is no request id."""
    view = memoryview(frame)
    try:
        head = view[0]
        if 0x90 <= head <= 0x9F:
            pos = 1
        elif head == 0xDC:
            pos = 3
        elif head == 0xDD:
            pos = 5
        else:
            return 0
        tag = view[pos]
        if 0xA0 <= tag <= 0xBF:  # fixstr
            start, pos = pos + 1, pos + 1 + (tag - 0xA0)
        elif tag == 0xD9:  # str8
            start, pos = pos + 2, pos + 2 + view[pos + 1]
        else:
            return 0
        if bytes(view[start:pos]).decode("utf-8", "replace") not in request_tags:
            return 0
        first = view[pos]
        if first <= 0x7F:  # positive fixint
            return int(first)
        width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(first)
        if width is None:
            return 0
        value = int.from_bytes(view[pos + 1 : pos + 1 + width], "big")
        return value if value < 2**62 and len(view) >= pos + 1 + width else 0
    except IndexError:
        return 0
