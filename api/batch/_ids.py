"""Request ids for batch rows, many at once, in the server's format.

A batch row's request id is one :class:`api.serving.request_ids.RequestIds` would issue
(``<experiment id>.<nonce><tag>``), so feedback for it is accepted by ``POST
/v1/feedback`` like an online request's. The nonces and the hex are made with numpy for a
whole chunk; only the keyed BLAKE2b tag is one call per row, from a copy of a hash object
that already holds the key (which saves the key's compression per id).
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

import numpy as np
import pyarrow as pa

__all__ = ["BatchRequestIds"]

_HEX: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NONCE_BYTES: Final = 8
_TAG_BYTES: Final = 8


def _hex(raw: np.ndarray) -> np.ndarray:
    """``raw`` ``[n, k]`` bytes as ``[n, 2k]`` lowercase hex digits (ASCII codes)."""
    out = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


class BatchRequestIds:
    """Issue request ids for one experiment under the deployment's request-id secret."""

    def __init__(self, secret: bytes, experiment_id: int) -> None:
        if len(secret) < 16:
            msg = "The request-id secret must be at least 16 bytes long."
            raise ValueError(msg)
        # As RequestIds: BLAKE2b takes keys of at most 64 bytes; a longer one is hashed.
        key = secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()
        self._keyed = hashlib.blake2b(key=key, digest_size=_TAG_BYTES)
        self._prefix = np.frombuffer(f"{experiment_id}.".encode(), dtype=np.uint8)

    def issue(self, n: int) -> pa.StringArray:
        """``n`` new request ids."""
        if n == 0:
            return pa.array([], pa.string())
        raw = np.frombuffer(os.urandom(n * _NONCE_BYTES), dtype=np.uint8).reshape(n, -1)
        heads = np.empty((n, self._prefix.size + 2 * _NONCE_BYTES), dtype=np.uint8)
        heads[:, : self._prefix.size] = self._prefix
        heads[:, self._prefix.size :] = _hex(raw)
        data = heads.tobytes()
        width = heads.shape[1]
        copy = self._keyed.copy
        tags = bytearray()
        for start in range(0, len(data), width):
            h = copy()
            h.update(data[start : start + width])
            tags += h.digest()
        tag_hex = _hex(np.frombuffer(bytes(tags), dtype=np.uint8).reshape(n, _TAG_BYTES))
        ids = np.concatenate([heads, tag_hex], axis=1)
        size = ids.shape[1]
        offsets = np.arange(0, (n + 1) * size, size, dtype=np.int32)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(ids.tobytes()))
