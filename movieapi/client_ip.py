"""The client's IP address as the rate limits see it: the socket peer, or what our own proxies recorded."""

from __future__ import annotations

import functools
import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with TRUSTED_PROXY_COUNT=n the n-th X-Forwarded-For address from the right."""
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        # Nobody we trust wrote X-Forwarded-For, so whatever it says came from the client.
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in header.split(",")] if header.strip() else []
    # Each trusted proxy appends the address it saw, so only the last n entries are ours; anything to
    # their left is the client's own claim. Fewer than n entries means the request did not come through
    # the whole chain: fall back to the socket peer rather than believe the header.
    if len(hops) < trusted:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-trusted]))
    except ValueError:
        return remote


@functools.lru_cache(maxsize=4096)
def rate_limit_bucket(ip: str) -> str:
    """The bucket an address counts against: IPv4 as is, IPv6 by its /64 (one host usually owns a whole /64)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)
