"""Protection of the admin POSTs against cross-site requests.

Three checks, all required:

* the request comes from the dashboard's own origin: its ``Origin`` header (or, without one, its
  ``Referer``) names a host of the dashboard's allow-list (`beach.dashboard.hosts`: never taken
  from the request's own ``Host``, which a DNS-rebinding page controls) on the port the request
  came to;
* it carries the cookie ``beach_csrf`` (``SameSite=Strict``, ``HttpOnly``: another site's page
  cannot make the browser send it, nor read it);
* it carries the token tied to that cookie — an HMAC of the cookie's nonce with a per-process secret,
  given to the page in a ``<meta>`` tag — in the ``X-CSRF-Token`` header or a ``csrf_token`` form field.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from beach.dashboard.hosts import split_host
from beach.dashboard.state import Dashboard

COOKIE = "beach_csrf"
HEADER = "x-csrf-token"
FIELD = "csrf_token"
_NONCE = re.compile(r"[A-Za-z0-9_-]{32,64}")


class Forbidden(HTTPException):
    """An admin action refused (HTTP 403)."""

    def __init__(self, detail: str) -> None:
        super().__init__(403, detail)


def _token(dash: Dashboard, nonce: str) -> str:
    return hmac.new(dash.secret, nonce.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Issued:
    """A page's token, and the nonce cookie it is tied to (``new``: the cookie must be set)."""

    token: str
    nonce: str
    new: bool

    def set_cookie(self, response: Response) -> None:
        """Set the nonce cookie on ``response`` if the browser does not have it yet."""
        if self.new:
            response.set_cookie(COOKIE, self.nonce, httponly=True, samesite="strict", path="/")


def issue(request: Request, dash: Dashboard) -> Issued:
    """The token for the page answering ``request`` (a new nonce if the browser has none)."""
    nonce = request.cookies.get(COOKIE, "")
    new = not _NONCE.fullmatch(nonce)
    if new:
        nonce = secrets.token_urlsafe(32)
    return Issued(_token(dash, nonce), nonce, new)


def _ours(url: str, request: Request, dash: Dashboard) -> bool:
    """True if ``url`` (an Origin, a Referer) is of a host the dashboard serves, on this request's port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    host, port = split_host(parts.netloc)
    return dash.allowed.allows(host) and port == split_host(request.headers.get("host", ""))[1]


async def check(request: Request, dash: Dashboard) -> None:
    """Raise `Forbidden` unless ``request`` passes the three checks of the module docs."""
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin is not None:  # "null" too (a sandboxed frame, a redirect from elsewhere): refused
        if not _ours(origin, request, dash):
            raise Forbidden(f"cross-site request refused: Origin {origin} is not one of this dashboard's "
                            f"({dash.allowed.describe()})")
    elif referer:
        if not _ours(referer, request, dash):
            raise Forbidden(f"cross-site request refused: Referer {referer} is not from this dashboard")
    else:
        raise Forbidden("cross-site request refused: the request names no Origin or Referer")
    nonce = request.cookies.get(COOKIE, "")
    if not _NONCE.fullmatch(nonce):
        raise Forbidden(f"CSRF cookie {COOKIE} missing: load a dashboard page first")
    token = request.headers.get(HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(FIELD)
        token = value if isinstance(value, str) else None
    if not token or not hmac.compare_digest(token, _token(dash, nonce)):
        raise Forbidden("CSRF token missing or wrong: reload the page and try again")
