"""The one choke point for HTTP requests to URLs that someone outside supplied.

Mirrored media URLs and partner webhooks go through here (STYLE.md): a timeout
is always set, redirects are followed by hand and bounded, and, unless
settings.ALLOW_PRIVATE_URLS, every connection must go to a public address, so
a partner cannot make the portal probe its own network or a cloud metadata
endpoint.

The check happens as each connection is made, on the very address the socket
then connects to (`_PinnedConnection`): checking a name first and letting the
HTTP client look it up again would let a DNS server answer a public address to
the check and an internal one to the connection (DNS rebinding). The Host
header, TLS SNI and the certificate check still use the URL's host name.

A `Deadline` bounds a whole exchange, headers and body included: requests'
timeouts apply to each socket operation, so a server that dribbles its answer
could otherwise hold a worker for as long as it likes.

Partners are told that a host is private or does not resolve, never which
address or resolver error: that would map the portal's internal network for
them. The detail is logged for the operators.

Tests patch `_resolve` (or use `responses`) and nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

logger = logging.getLogger("moderation.safe_http")

DEFAULT_TIMEOUT = (5, 15)  # (connect, read) seconds
FETCH_TIMEOUT = (5, 30)
CHUNK_BYTES = 64 * 1024
FETCH_DEADLINE_SECONDS = 300  # headers and body of one fetch

PRIVATE_ADDRESS = "The URL's host resolves to a private or reserved address."
NO_ADDRESS = "The URL's host does not resolve."

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

    For validating a URL up front (the API); requests made through here check
    again as they connect. Raises UnsafeURL, or requests.ConnectionError when
    the host does not resolve (possibly a passing DNS failure, so the caller
    may retry).
    """
    host, port = _split(url)
    if _private_allowed(allow_private):
        return
    try:
        _addresses(host, port, allow_private=False)
    except OSError as exc:
        raise requests.ConnectionError(NO_ADDRESS) from exc


class Deadline:
    """A time limit on a whole exchange, from connecting to the last byte read.

    Use it once, as a context manager around the request and the reading of
    its body, and pass it to `safe_request`. When time is up, every socket the
    request opened is shut down, so the read in progress ends at once: with a
    network error, or with what looks like the end of the headers or body. So
    the caller asks `expired` whatever the outcome.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        # Our own duplicates of the sockets: TLS takes a socket's descriptor
        # over, and a duplicate stays valid whoever closes the original, so a
        # late shutdown cannot hit a descriptor number reused meanwhile. (They
        # keep the connections open until the block ends.)
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._ends

    def cap(self, timeout: float) -> float:
        """`timeout`, or the time left if that is shorter (never 0: that means non-blocking)."""
        return max(0.001, min(timeout, self._ends - time.monotonic()))

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock.dup())
            if self.expired:
                _shut_down(self._sockets[-1])

    def _expire(self) -> None:
        with self._lock:
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # no longer connected


def safe_request(
    method: str,
    url: str,
    *,
    allow_private: bool | None = None,
    timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
    allow_redirects: bool = True,
    max_redirects: int = 3,
    deadline: Deadline | None = None,
    **kwargs: Any,
) -> requests.Response:
    """Send a request, following at most `max_redirects` redirects (none
    without `allow_redirects`: the 3xx is returned).

    Every connection, a redirect's included, goes only to an address checked
    as it is made. Raises UnsafeURL for a refused URL and
    requests.RequestException (including TooManyRedirects) for network errors;
    after `deadline` expires, requests fail with a RequestException. The
    caller closes the response when it passes stream=True.
    """
    timeout = timeout or DEFAULT_TIMEOUT  # never without one
    with _session(_private_allowed(allow_private), deadline) as session:
        for _ in range(max_redirects + 1):
            validate_url_syntax(url)
            response = session.request(method, url, allow_redirects=False, timeout=timeout, **kwargs)
            if not (allow_redirects and response.is_redirect):
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
    """Stream the body at `url` into `dest`, refusing more than `max_bytes`,
    all within FETCH_DEADLINE_SECONDS.

    Raises UnsafeURL, FetchTooLarge or FetchError. On an error `dest` may hold
    part of the body: the caller discards it.
    """
    with Deadline(FETCH_DEADLINE_SECONDS) as deadline:
        try:
            response = safe_request("GET", url, allow_private=allow_private, timeout=timeout, deadline=deadline,
                                    stream=True)
        except requests.RequestException as exc:
            if deadline.expired:
                raise _too_slow(url) from exc
            if isinstance(exc, requests.Timeout):
                raise FetchError(f"timed out fetching {url}") from exc
            raise FetchError(f"could not fetch {url}: {exc}") from exc
        with response:
            if not 200 <= response.status_code < 300:
                raise FetchError(f"{response.url} answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge(f"{response.url} is {declared} bytes, more than the {max_bytes} allowed")
            size = _copy_body(response, dest, max_bytes, deadline)
    return FetchResult(content_type=response.headers.get("Content-Type", ""), size=size, final_url=response.url)


def _copy_body(response: requests.Response, dest: BinaryIO, max_bytes: int, deadline: Deadline) -> int:
    size = 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise FetchTooLarge(f"{response.url} sent more than the {max_bytes} bytes allowed")
            dest.write(chunk)
    except requests.RequestException as exc:
        if deadline.expired:
            raise _too_slow(response.url) from exc
        raise FetchError(f"the download from {response.url} broke off: {exc}") from exc
    if deadline.expired:  # a socket shut down at the deadline can look like the end of the body
        raise _too_slow(response.url)
    return size


def _too_slow(url: str) -> FetchError:
    return FetchError(f"{url} took longer than {FETCH_DEADLINE_SECONDS:g} s to send")


def _split(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or UnsafeURL."""
    # urlsplit drops tabs and newlines silently and keeps NUL; no HTTP client sends any of them.
    if any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise UnsafeURL("the URL contains a control character")
    if not url.isascii():
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:  # JSON's "\ud800": half a UTF-16 pair, which no URL can carry
            raise UnsafeURL("the URL contains an unpaired UTF-16 surrogate") from None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if not _valid_host(parts.hostname):
        raise UnsafeURL(f"{parts.hostname!r} is not a valid host name")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


# One DNS label, as an ASCII (IDNA) name carries it; underscores occur in real names.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


def _valid_host(host: str) -> bool:
    """An IP address, or a name DNS could hold: the resolver would fail on the
    rest with UnicodeError ('a..com', a label over 63 characters) or look up
    what no server has ('a b.com'), after the URL was accepted."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:  # empty or long labels, surrogates, characters IDNA refuses
        return False
    return len(name) <= 253 and all(_LABEL.match(label) for label in name.removesuffix(".").split("."))


def _private_allowed(allow_private: bool | None) -> bool:
    return settings.ALLOW_PRIVATE_URLS if allow_private is None else allow_private


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to; the one place that looks up names."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to connect to for `host`: UnsafeURL unless every one is
    public (or private ones are allowed), OSError if there is none. Logs what
    the exception's message keeps from partners."""
    try:
        addresses = _resolve(host, port)
    except OSError as exc:
        logger.info("a URL's host does not resolve", extra={"host": host, "error": str(exc)})
        raise
    for address in addresses:
        if not (allow_private or _is_public(address)):
            logger.warning("refused a URL whose host resolves to a private or reserved address",
                           extra={"host": host, "address": address})
            raise UnsafeURL(PRIVATE_ADDRESS)
    return addresses


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


# --- Connections pinned to the checked address -------------------------------------------

class _PinnedConnection:
    """Mixin for urllib3's connections: look the host up through `_addresses`
    and connect the socket to one of those addresses, so what was checked is
    what is reached. Everything else (Host header, SNI, certificate) still
    works from the host name."""

    def __init__(self, *args: Any, allow_private: bool, deadline: Deadline | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._allow_private = allow_private
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        try:
            addresses = _addresses(self._dns_host.strip("[]"), self.port, allow_private=self._allow_private)
        except OSError as exc:
            raise NewConnectionError(self, NO_ADDRESS) from exc
        error: OSError | None = None
        for address in addresses:
            timeout = self.timeout if self._deadline is None else self._deadline.cap(self.timeout)
            try:
                sock = create_connection((address, self.port), timeout, source_address=self.source_address,
                                         socket_options=self.socket_options)
            except OSError as exc:
                error = exc
                continue
            if self._deadline is not None:
                self._deadline.watch(sock)
            return sock
        if isinstance(error, TimeoutError):
            message = f"Connection to {self.host} timed out. (connect timeout={timeout})"
            raise ConnectTimeoutError(self, message) from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


class _PinnedHTTPConnection(_PinnedConnection, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, *, allow_private: bool, deadline: Deadline | None):
        self._connection_kwargs = {"allow_private": allow_private, "deadline": deadline}
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # A pool hands keyword arguments it does not know on to its connections.
        self.poolmanager.pool_classes_by_scheme = {
            "http": partial(_PinnedHTTPConnectionPool, **self._connection_kwargs),
            "https": partial(_PinnedHTTPSConnectionPool, **self._connection_kwargs),
        }


def _session(allow_private: bool, deadline: Deadline | None) -> requests.Session:
    session = requests.Session()
    # A proxy from the environment would look the name up itself, after our
    # check; and ~/.netrc credentials are not for partners' servers.
    session.trust_env = False
    adapter = _PinnedAdapter(allow_private=allow_private, deadline=deadline)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
