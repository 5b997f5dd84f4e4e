"""The one choke point for HTTP requests to URLs that someone outside supplied.

Mirrored media URLs and partner webhooks go through here (STYLE.md): a timeout
is always set, redirects are followed by hand and bounded, and, unless
settings.ALLOW_PRIVATE_URLS, every hop must resolve to public addresses only, so
a partner cannot make the portal probe its own network or a cloud metadata
endpoint. Tests patch `_resolve` (or use `responses`) and nothing else.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

DEFAULT_TIMEOUT = (5, 15)  # (connect, read) seconds
FETCH_TIMEOUT = (5, 30)
CHUNK_BYTES = 64 * 1024
# requests' read timeout is per socket read; a server dribbling bytes could
# otherwise hold a worker for as long as it likes.
FETCH_DEADLINE_SECONDS = 300

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Methods that lose their body on these redirects, as browsers and requests do.
_REDIRECT_TO_GET = {301, 302, 303}


class UnsafeURL(ValueError):
    """A URL the portal refuses to contact; the message says why."""


class FetchError(Exception):
    """Fetching a URL failed: bad status, network error, timeout."""


class FetchTooLarge(FetchError):
    pass


@dataclass(frozen=True)
class FetchResult:
    content_type: str
    size: int
    final_url: str


def validate_url_syntax(url: str) -> None:
    """Refuse what no fetch could accept, without a DNS lookup (for API validation)."""
    _split(url)


def check_url(url: str, *, allow_private: bool | None = None) -> None:
    """Refuse `url` unless it is http(s) and its host resolves to public addresses only.

    Raises UnsafeURL, or requests.ConnectionError when the host does not
    resolve (possibly a passing DNS failure, so the caller may retry).
    """
    host, port = _split(url)
    if _private_allowed(allow_private):
        return
    try:
        addresses = _resolve(host, port)
    except OSError as exc:
        raise requests.ConnectionError(f"cannot resolve host {host!r}: {exc}") from exc
    for address in addresses:
        if not _is_public(address):
            raise UnsafeURL(f"{host} resolves to a private or reserved address ({address}); refused")


def safe_request(
    method: str,
    url: str,
    *,
    allow_private: bool | None = None,
    timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
    max_redirects: int = 3,
    **kwargs: Any,
) -> requests.Response:
    """Send a request, following at most `max_redirects` redirects, each checked like `url`.

    Raises UnsafeURL for a refused hop and requests.RequestException (including
    TooManyRedirects) for network errors. The caller closes the response when
    it passes stream=True.

    Each hop is checked right before it is sent, but requests resolves the host
    again to connect: a DNS server that answers differently within that window
    (DNS rebinding) can still reach a private address. Closing that needs the
    connection pinned to the checked address, or an egress firewall.
    """
    timeout = timeout or DEFAULT_TIMEOUT  # never without one
    with requests.Session() as session:
        for _ in range(max_redirects + 1):
            check_url(url, allow_private=allow_private)
            response = session.request(method, url, allow_redirects=False, timeout=timeout, **kwargs)
            if not response.is_redirect:
                return response
            response.close()
            next_url = urljoin(response.url, response.headers["Location"])
            if response.status_code in _REDIRECT_TO_GET and method.upper() != "HEAD":
                method = "GET"
                for body in ("data", "json", "files"):
                    kwargs.pop(body, None)
            if urlsplit(next_url).netloc != urlsplit(url).netloc:
                _drop_credentials(kwargs)
            url = next_url
    raise requests.TooManyRedirects(f"more than {max_redirects} redirects")


def fetch_to_file(
    url: str,
    dest: BinaryIO,
    *,
    max_bytes: int,
    timeout: tuple[float, float] | float = FETCH_TIMEOUT,
    allow_private: bool | None = None,
) -> FetchResult:
    """Stream the body at `url` into `dest`, refusing more than `max_bytes`.

    Raises UnsafeURL, FetchTooLarge or FetchError. On an error `dest` may hold
    part of the body: the caller discards it.
    """
    try:
        response = safe_request("GET", url, allow_private=allow_private, timeout=timeout, stream=True)
    except requests.Timeout as exc:
        raise FetchError(f"timed out fetching {url}") from exc
    except requests.RequestException as exc:
        raise FetchError(f"could not fetch {url}: {exc}") from exc
    with response:
        if not 200 <= response.status_code < 300:
            raise FetchError(f"{response.url} answered HTTP {response.status_code}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchTooLarge(f"{response.url} is {declared} bytes, more than the {max_bytes} allowed")
        size = _copy_body(response, dest, max_bytes)
    return FetchResult(content_type=response.headers.get("Content-Type", ""), size=size, final_url=response.url)


def _copy_body(response: requests.Response, dest: BinaryIO, max_bytes: int) -> int:
    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
    size = 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise FetchTooLarge(f"{response.url} sent more than the {max_bytes} bytes allowed")
            if time.monotonic() > deadline:
                raise FetchError(f"{response.url} took longer than {FETCH_DEADLINE_SECONDS} s to send")
            dest.write(chunk)
    except requests.RequestException as exc:
        raise FetchError(f"the download from {response.url} broke off: {exc}") from exc
    return size


def _split(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or UnsafeURL."""
    # urlsplit drops tabs and newlines silently and keeps NUL; no HTTP client sends any of them.
    if any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise UnsafeURL("the URL contains a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _private_allowed(allow_private: bool | None) -> bool:
    return settings.ALLOW_PRIVATE_URLS if allow_private is None else allow_private


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to; the one place that looks up names."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
    ip = _embedded_ipv4(ip) or ip
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, which is where the packets really go."""
    if ip.version != 6:
        return None
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def _drop_credentials(kwargs: dict[str, Any]) -> None:
    """Do not hand a caller's credentials to another host it was redirected to."""
    kwargs.pop("auth", None)
    kwargs.pop("cookies", None)
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() not in ("authorization", "cookie")}
    if "headers" in kwargs:
        kwargs["headers"] = headers
