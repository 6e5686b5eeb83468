"""Target addresses: checked before they are stored, and shown only in a redacted form.

An incoming-webhook URL is a bearer secret (Slack's ``/services/T…/B…/<token>``, a
query-string key, ``user:password@``): whoever holds it can post. So the API never
echoes one back, not even in a validation error; it shows :func:`redact_url` instead:
the scheme, the host and the port, the path's first segment when more follow, and ``…``
for the rest.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from api.errors import InvalidRequestError

__all__ = ["MAX_URL_LENGTH", "ROUTING_KEY_LENGTH", "check_routing_key", "check_url", "redact_url"]

MAX_URL_LENGTH: Final = 2048
ROUTING_KEY_LENGTH: Final = 32
"""A PagerDuty Events API v2 integration (routing) key is 32 characters."""

_SCHEMES: Final = ("http", "https")
_HIDDEN: Final = "…"


def redact_url(url: str) -> str:
    """``url`` without its secrets: scheme, host, port and the path's first segment when
    more follow.

    ``https://hooks.slack.com/services/T0/B0/abc?x=1`` → ``https://hooks.slack.com/services/…``.
    A URL that cannot be parsed at all is shown as ``…``.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _HIDDEN
    if not parts.scheme or not host:
        return _HIDDEN
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    segments = [s for s in parts.path.split("/") if s]
    # The first segment is shown only when others follow: a lone one may be the token.
    if len(segments) > 1:
        shown += f"/{segments[0]}"
    hidden = segments or parts.query or parts.fragment or parts.username
    return shown + (f"/{_HIDDEN}" if hidden else "")


def check_url(url: str, *, field: str = "url") -> str:
    """``url`` stripped, or a 422 naming the field and the problem (never the secret part).

    Raises
    ------
    InvalidRequestError
        Not an http or https URL with a host, longer than :data:`MAX_URL_LENGTH`, or
        holding whitespace or control characters.
    """
    url = url.strip()
    shown = redact_url(url)
    if len(url) > MAX_URL_LENGTH:
        msg = f"{field} is {len(url)} characters long; at most {MAX_URL_LENGTH} are accepted."
        raise InvalidRequestError(msg, code="invalid_url")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        msg = f"{field} ({shown}) holds whitespace or control characters."
        raise InvalidRequestError(msg, code="invalid_url")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        msg = f"{field} ({shown}) is not a valid URL: its host or port cannot be read."
        raise InvalidRequestError(msg, code="invalid_url") from None
    if parts.scheme.lower() not in _SCHEMES:
        scheme = repr(parts.scheme) if parts.scheme else "no scheme"
        msg = f"{field} ({shown}) has {scheme}; an alert target needs an http or https URL."
        raise InvalidRequestError(msg, code="invalid_url")
    if not host:
        msg = f"{field} ({shown}) has no host; an alert target needs http(s)://host/…."
        raise InvalidRequestError(msg, code="invalid_url")
    return url


def check_routing_key(key: str) -> str:
    """A PagerDuty routing key: 32 letters and digits, or a 422 that does not echo it."""
    key = key.strip()
    if len(key) != ROUTING_KEY_LENGTH or not key.isascii() or not key.isalnum():
        msg = (
            f"routing_key must be a PagerDuty Events API v2 integration key of "
            f"{ROUTING_KEY_LENGTH} letters and digits; the one given has {len(key)} "
            "characters or others than letters and digits."
        )
        raise InvalidRequestError(msg, code="invalid_routing_key")
    return key
