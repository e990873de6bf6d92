"""What listens where, read from the kernel's socket tables (Linux /proc/net)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def listening_addresses(port: int) -> set[str]:
    """Every local address with a TCP socket listening on `port` (IPv4 and IPv6)."""
    found: set[str] = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text(encoding="ascii").splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, port_hex = local.partition(":")
            if state != _LISTEN or int(port_hex, 16) != port:
                continue
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(
                bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)
            )
            assert len(raw) == width
            found.add(str(ipaddress.ip_address(raw)))
    return found
