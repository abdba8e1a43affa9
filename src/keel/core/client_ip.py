"""Who the client is: the socket peer, or what trusted reverse proxies say in X-Forwarded-For."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def parse_networks(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Comma-separated IP addresses and CIDR networks; a bare address is a network of one.

    Raises ``ValueError`` naming the first entry that is neither; a network with host bits set
    (``10.0.0.1/8``) is refused as a likely typo.
    """
    entries = value.split(",") if isinstance(value, str) else value
    networks = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ip_network(entry))
        except ValueError:
            try:
                meant = ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
            raise ValueError(f"{entry!r} has host bits set; did you mean {meant}?") from None
    return tuple(networks)


def _parse_ip(value: str) -> IPAddress | None:
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare and report them as IPv4.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def resolve_client_ip(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]) -> str | None:
    """The client's address as far as it can be trusted.

    Only a peer in ``trusted`` may speak for someone else. Its X-Forwarded-For list (every header
    line, in order) is walked from the right, past further trusted proxies, to the first address
    none of them vouches for. Entries left of that one are whatever the client chose to send, so
    they are never read. An entry that is not an IP address means the chain cannot be followed:
    the peer is the answer then.
    """
    peer_address = _parse_ip(peer) if peer else None
    if peer_address is None or not _is_trusted(peer_address, trusted):
        return str(peer_address) if peer_address is not None else peer
    hops = [hop for line in forwarded_for for hop in line.split(",")]
    client = peer_address
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None:
            return str(peer_address)
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


# An IPv6 client usually holds a whole /64 (a home line, a cloud VM): counted one address at a
# time it would have 2^64 allowances.
IPV6_CLIENT_PREFIX = 64


def limit_key(ip: str | None) -> str:
    """Whom a per-address rate limit counts: an IPv4 address, or the /64 an IPv6 address is in."""
    if ip is None:
        return "unknown"
    address = _parse_ip(ip)
    if address is None:
        return ip
    if isinstance(address, IPv6Address):
        return str(ip_network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def client_ip_of(scope: Mapping[str, Any], trusted: Sequence[IPNetwork]) -> str | None:
    """`resolve_client_ip` for an ASGI scope: its socket peer and its X-Forwarded-For lines."""
    client = scope.get("client")
    forwarded_for = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
    return resolve_client_ip(client[0] if client else None, forwarded_for, trusted)
