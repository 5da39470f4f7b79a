"""One security model for the whole web app: who may ask, and from which page.

* A token, when set, must come with every request (``Authorization: Bearer``, ``X-Tiefwatch-Token`` or
  ``?token=`` for the ``<img>`` tags a page cannot add headers to), compared in constant time.
* Without a token, a server bound to loopback answers only requests whose Host header is loopback: a web page
  elsewhere cannot reach it through a DNS name that resolves to 127.0.0.1 (DNS rebinding).
* A request from another site's page (an ``Origin`` header naming another host) is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

MIN_TOKEN_LENGTH = 12
TOKEN_HEADER = "X-Tiefwatch-Token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class AccessDenied(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AccessPolicy:
    token: str | None = None
    loopback_only: bool = True  # Host must be loopback (no token, bound to loopback)

    def check(self, request: HTTPConnection, need_token: bool = True) -> None:
        """Raise ``AccessDenied`` unless the request may go on; ``need_token=False`` for public files (the page's
        own script and style, the API schema) that carry nothing from the catalogue."""
        headers = request.headers
        if self.token is not None and need_token:
            given = headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
            authorization = headers.get("Authorization", "")
            if authorization.lower().startswith("bearer "):
                given = authorization[7:].strip()
            if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
                raise AccessDenied(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
        elif self.loopback_only and host_name(headers.get("Host", "")) not in LOOPBACK_NAMES:
            raise AccessDenied(HTTPStatus.FORBIDDEN, "this server answers only to localhost")
        origin = headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != headers.get("Host", "").lower():
            raise AccessDenied(HTTPStatus.FORBIDDEN, "cross-origin requests are refused")


def check_token(token: str | None) -> None:
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the token must be at least {MIN_TOKEN_LENGTH} characters")


def suggest_token() -> str:
    return secrets.token_urlsafe(18)


def host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
