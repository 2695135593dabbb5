"""The dashboard's safety: who may connect, who may act, what the browser may run.

* :func:`check_bind`: a bind address other than loopback needs a token or basic-auth
  credentials (the dashboard can delete queues).
* :class:`Guard`: ASGI middleware in front of every route: the Host header must be allowed
  (loopback names when there are no credentials, against DNS rebinding), the credentials must
  match when configured, and every response gets a strict Content-Security-Policy with a
  per-request nonce (the only scripts that run are the dashboard's own), no framing, no sniffing
  and no referrer to other sites (same-origin: a form POST then carries its Origin).
* CSRF: a random cookie per browser and, in every form, an HMAC of it under the app's secret;
  an action is refused unless the form carries the HMAC of the request's cookie and the
  ``Origin`` header, when sent, names this host.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable, MutableMapping, Sequence
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

Scope = MutableMapping[str, Any]
Message = dict[str, Any]

TOKEN_COOKIE = "leaseq_dashboard_token"
CSRF_COOKIE = "leaseq_dashboard_csrf"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class UnsafeBind(ValueError):
    """Refusal to serve on a non-loopback address without credentials."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def check_bind(host: str, *, token: str | None, basic_auth: tuple[str, str] | None) -> None:
    """Raise :class:`UnsafeBind` unless ``host`` is loopback or credentials are set."""
    if not is_loopback(host) and not token and not basic_auth:
        raise UnsafeBind(
            f"refusing to serve the dashboard on {host!r} without credentials: it can remove "
            "and purge items. Pass --token (or $LEASEQ_DASHBOARD_TOKEN) or --basic-auth "
            "USER:PASSWORD, or bind 127.0.0.1 and tunnel to it.")


def parse_basic(value: str | tuple[str, str] | None) -> tuple[str, str] | None:
    """``"user:password"`` or a pair as a (user, password) pair; None stays None."""
    if value is None or isinstance(value, tuple):
        return value
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("basic auth must be USER:PASSWORD, both non-empty")
    return user, password


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def header(scope: Scope, name: bytes) -> str | None:
    """The first header ``name`` (lowercase) of a request, as text."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def cookies(scope: Scope) -> dict[str, str]:
    raw = header(scope, b"cookie")
    if not raw:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


class Csrf:
    """CSRF tokens bound to a per-browser cookie by an HMAC under the app's secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self.secret, nonce.encode("utf-8"), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce) and bool(token) and _same(self.token_for(nonce or ""), token or "")

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)


def same_origin(scope: Scope) -> bool:
    """False when the request names another origin in ``Origin`` (absent: True)."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    host = header(scope, b"host") or ""
    return urlsplit(origin).netloc.lower() == host.lower()


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware: host check, authentication and security headers (module docstring).

    ``allowed_hosts``: Host header names accepted (``"*"``: any); by default loopback names
    when no credentials are configured, else any.
    """

    def __init__(self, app: Any, *, token: str | None, basic_auth: tuple[str, str] | None,
                 allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.token = token or None
        # the cookie holds a digest of the token: any token text fits, the token never does
        self.cookie_value = hashlib.sha256(b"leaseq-dashboard:" + (token or "").encode()) \
            .hexdigest()
        self.basic = basic_auth
        if allowed_hosts is None:
            allowed_hosts = ["*"] if (self.token or self.basic) else list(LOOPBACK_NAMES)
        self.hosts = {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self._host_ok(scope):
            await _plain(send, 400, "this dashboard only answers on its own host names\n")
            return
        ok, set_cookie = self._authenticated(scope)
        if not ok:
            await self._challenge(scope, send)
            return
        if set_cookie:  # ?token=... on a GET: keep it in a cookie, drop it from the URL
            await self._store_token(scope, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_security_headers(nonce))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _host_ok(self, scope: Scope) -> bool:
        if "*" in self.hosts:
            return True
        host = header(scope, b"host")
        return host is not None and _host_name(host).lower() in self.hosts

    def _authenticated(self, scope: Scope) -> tuple[bool, bool]:
        """(allowed, came with ``?token=`` to be moved into a cookie)."""
        if not self.token and not self.basic:
            return True, False
        auth = header(scope, b"authorization") or ""
        scheme, _, value = auth.partition(" ")
        if self.token:
            if scheme.lower() == "bearer" and _same(value.strip(), self.token):
                return True, False
            cookie = cookies(scope).get(TOKEN_COOKIE)
            if cookie is not None and _same(cookie, self.cookie_value):
                return True, False
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token")
            if given is not None and _same(given, self.token) and scope.get("method") == "GET":
                return True, True
        if self.basic and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True) \
                    .decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False, False
            if _same(user, self.basic[0]) & _same(password, self.basic[1]):
                return True, False
        return False, False

    async def _challenge(self, scope: Scope, send: Any) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if self.basic:
            headers.append((b"www-authenticate", b'Basic realm="leaseq dashboard"'))
            text = "credentials required\n"
        else:
            text = ("a token is required: open this page with ?token=... once, or send "
                    "'Authorization: Bearer ...'\n")
        await _plain(send, 401, text, headers)

    async def _store_token(self, scope: Scope, send: Any) -> None:
        root = scope.get("root_path", "") or ""
        query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                               keep_blank_values=True) if k != "token"]
        location = quote(scope.get("path", "/") or "/") + (
            "?" + urlencode(query) if query else "")
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (f"{TOKEN_COOKIE}={self.cookie_value}; Path={root or '/'}; HttpOnly; "
                  f"SameSite=Strict{secure}")
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1")),
            (b"set-cookie", cookie.encode("latin-1")),
            (b"cache-control", b"no-store"),
            *_security_headers(secrets.token_urlsafe(8)),
        ]})
        await send({"type": "http.response.body", "body": b""})


def _security_headers(nonce: str) -> Iterable[tuple[bytes, bytes]]:
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
           "frame-ancestors 'none'; base-uri 'none'")
    return [
        (b"content-security-policy", csp.encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]


async def _plain(send: Any, status: int, text: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
        *_security_headers(secrets.token_urlsafe(8)),
    ]})
    await send({"type": "http.response.body", "body": body})
