"""Request ids that cannot be guessed and that every replica can verify without I/O.

An id reads ``<experiment id>.<nonce><tag>``: the nonce is 64 bits from the operating
system's CSPRNG (never the generator that picks variants, whose state a client could
rebuild from the ids it sees), and the tag is the first 64 bits of a keyed BLAKE2b of
``<experiment id>.<nonce>`` under the deployment's secret. A replica checks the tag with
one hash, so feedback for an id this deployment never issued is refused before anything
is stored; forging one means guessing a 64-bit tag.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["RequestIds"]

_NONCE_HEX = 16
_TAG_HEX = 16


class RequestIds:
    """Issue and verify request ids under one deployment-wide secret."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            msg = "The request-id secret must be at least 16 bytes long."
            raise ValueError(msg)
        # BLAKE2b takes keys of at most 64 bytes; a longer secret is hashed down first.
        self._key = secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()

    def _tag(self, head: str) -> str:
        return hashlib.blake2b(head.encode(), key=self._key, digest_size=_TAG_HEX // 2).hexdigest()

    def issue(self, experiment_id: int) -> str:
        head = f"{experiment_id}.{secrets.token_hex(_NONCE_HEX // 2)}"
        return head + self._tag(head)

    def experiment_of(self, request_id: str) -> int | None:
        """The experiment id of a request id this deployment issued, else ``None``."""
        exp, sep, tail = request_id.partition(".")
        if (
            not sep
            or not exp.isdigit()
            or len(exp) > 18
            or len(tail) != _NONCE_HEX + _TAG_HEX
            or not all(c in "0123456789abcdef" for c in tail)
        ):
            return None
        head = f"{exp}.{tail[:_NONCE_HEX]}"
        if not hmac.compare_digest(self._tag(head), tail[_NONCE_HEX:]):
            return None
        return int(exp)
