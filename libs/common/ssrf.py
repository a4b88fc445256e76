"""Outbound-request guard against SSRF (DESIGN §5).

A user-supplied `base_url` must not let agentmgr reach what only agentmgr can reach:
cloud metadata endpoints, link-local, private and reserved ranges (and loopback unless
allowed, as it is under `make run` for a local Ollama). The check is on *resolved*
addresses, so decimal (`http://2852039166/`), octal, hex, IPv4-mapped IPv6
(`[::ffff:169.254.169.254]`) and DNS names pointing inside are caught alike.

`check_url` runs at save time; `guarded_client` re-checks at connection time, inside
the HTTP client's connect step, and connects to the address it checked — so a DNS
answer that changes between check and use (rebinding) cannot slip through. Redirects
are never followed and environment proxies are ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import urlsplit

import httpcore
import httpcore2
import httpx
import httpx2

__all__ = [
    "EgressPolicy",
    "EgressRefused",
    "check_url",
    "guarded_client",
    "guarded_legacy_client",
    "is_egress_refusal",
    "validate_base_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 metadata
        "fe80::/10",  # link-local
        "fd00:ec2::254/128",  # AWS IPv6 metadata
        "100.100.100.200/32",  # Alibaba metadata
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "240.0.0.0/4",
        "255.255.255.255/32",
    )
)


class EgressRefused(Exception):
    """The URL or address is not allowed by the egress policy."""


@dataclass(frozen=True)
class EgressPolicy:
    """Which destinations outbound calls may reach."""

    allow_loopback: bool = False
    """127.0.0.0/8 and ::1 (true for local development with Ollama or a stub)."""
    allow_private: bool = False
    """RFC 1918, CGNAT, unique-local IPv6 (true when providers live in your network)."""
    allowed_networks: tuple[IPNetwork, ...] = field(default=())
    """Explicit exceptions, checked first (e.g. one internal gateway's /32)."""

    @classmethod
    def from_settings(
        cls, *, allow_loopback: bool, allow_private: bool, allowed_networks: Iterable[str]
    ) -> EgressPolicy:
        """Build from settings values (CIDR strings)."""
        return cls(
            allow_loopback=allow_loopback,
            allow_private=allow_private,
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks),
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be reached, or None if it may."""
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or address.sixtofour
            if embedded is None and address.teredo is not None:
                embedded = address.teredo[1]
            if embedded is not None:
                return self.refusal(embedded)
        if any(address in net for net in self.allowed_networks):
            return None
        if any(address in net for net in _ALWAYS_REFUSED):
            return "link-local, metadata, multicast or reserved address"
        if address.is_loopback:
            return None if self.allow_loopback else "loopback address"
        if address.is_global:
            return None
        if address.is_private or address in ipaddress.ip_network("100.64.0.0/10"):
            return None if self.allow_private else "private address"
        return "reserved or non-routable address"


def validate_base_url(url: str) -> str:
    """Syntax check of a base URL; returns it without a trailing slash."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EgressRefused("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise EgressRefused("must start with http:// or https://")
    if not parts.hostname:
        raise EgressRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("must not carry credentials; use api_key")
    if parts.fragment or parts.query:
        raise EgressRefused("must not have a query or fragment")
    if port == 0:
        raise EgressRefused("has an invalid port")
    return url.rstrip("/")


async def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        addresses.append(ipaddress.ip_address(text))
    return addresses


async def check_url(url: str, policy: EgressPolicy, *, resolve_timeout_s: float = 2.0) -> None:
    """Refuse a URL whose host resolves to a refused address.

    A name that does not resolve (now) passes: it cannot be judged, and the
    connection-time check still applies.
    """
    validate_base_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await asyncio.wait_for(_resolve(host, port), resolve_timeout_s)
    except (OSError, TimeoutError, UnicodeError):
        return
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise EgressRefused(f"resolves to a {reason}, which is not allowed")


class _EgressMarker:
    """Mixed into the connect errors raised for refusals (the HTTP stacks keep them as causes)."""


def _guarded_stack(core: ModuleType, client_module: ModuleType, create_ssl: Callable[..., object]) -> type:
    """A transport class for one HTTP stack (httpx2/httpcore2, or legacy httpx/httpcore)."""

    class EgressConnectError(core.ConnectError, _EgressMarker):  # type: ignore[misc, name-defined]
        pass

    class GuardedBackend(core.AsyncNetworkBackend):  # type: ignore[misc, name-defined]
        """Resolves, checks every address, then connects to a checked one."""

        def __init__(self, policy: EgressPolicy) -> None:
            self._policy = policy
            self._inner = core.AnyIOBackend()

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[object] | None = None,
        ) -> object:
            try:
                addresses = await asyncio.wait_for(_resolve(host, port), timeout)
            except (OSError, UnicodeError) as exc:
                raise core.ConnectError(f"name resolution failed: {type(exc).__name__}") from exc
            except TimeoutError as exc:
                raise core.ConnectTimeout("name resolution timed out") from exc
            if not addresses:
                raise core.ConnectError("name resolution returned no address")
            for address in addresses:
                reason = self._policy.refusal(address)
                if reason is not None:
                    raise EgressConnectError(f"egress refused: {reason}")
            # Connect to the address just checked: no second lookup, no rebinding window.
            return await self._inner.connect_tcp(
                str(addresses[0]),
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )

        async def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Iterable[object] | None = None
        ) -> object:
            raise core.ConnectError("unix sockets are not allowed")

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    class GuardedTransport(client_module.AsyncHTTPTransport):  # type: ignore[misc, name-defined]
        def __init__(self, policy: EgressPolicy, *, max_connections: int) -> None:
            super().__init__(trust_env=False)
            # The transports take no network backend; swap in a pool that uses ours.
            self._pool = core.AsyncConnectionPool(
                ssl_context=create_ssl(trust_env=False),
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
                network_backend=GuardedBackend(policy),
            )

    return GuardedTransport


_TRANSPORT2 = _guarded_stack(httpcore2, httpx2, httpx2.create_ssl_context)
_TRANSPORT1 = _guarded_stack(httpcore, httpx, httpx.create_ssl_context)


def guarded_client(
    policy: EgressPolicy, *, timeout_s: float, max_connections: int = 100
) -> httpx2.AsyncClient:
    """An httpx2 client (what the model SDKs use) enforcing `policy`, never redirecting."""
    return httpx2.AsyncClient(
        transport=_TRANSPORT2(policy, max_connections=max_connections),
        timeout=httpx2.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


def guarded_legacy_client(
    policy: EgressPolicy, *, timeout_s: float, max_connections: int = 100
) -> httpx.AsyncClient:
    """The same guard for SDKs still on legacy httpx (Groq)."""
    return httpx.AsyncClient(
        transport=_TRANSPORT1(policy, max_connections=max_connections),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


def is_egress_refusal(exc: BaseException) -> bool:
    """True when an httpx error was caused by the egress policy."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (EgressRefused, _EgressMarker)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
