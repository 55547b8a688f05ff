"""What ``python -m coursekit.hub`` checks on this machine before it starts: its ports.

Whether other users can run this Python is :mod:`coursekit.hub.shared_python`.
"""

from __future__ import annotations

import socket


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Example:
        >>> 1024 <= free_loopback_port() < 65536
        True
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_loopback_ports(count: int, *, besides: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on right now, none of them ``besides``.

    The probes are held open together, so that the kernel cannot hand out one port twice; ``besides`` is a
    port that is free now but taken later (the hub's own, before its proxy listens on it). Two draws of
    :func:`free_loopback_port` one after the other can return the same port, or ``besides``; with the hub's
    internal port equal to the proxy's public one, the proxy sends its error pages to itself.

    Example:
        >>> ports = free_loopback_ports(2, besides=free_loopback_port())
        >>> len(set(ports)) == 2 and all(1024 <= port < 65536 for port in ports)
        True
    """
    probes: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            probe = socket.socket()
            probes.append(probe)  # kept open until the end, ``besides`` too, so that no draw returns it again
            probe.bind(("127.0.0.1", 0))
            if probe.getsockname()[1] != besides:
                ports.append(probe.getsockname()[1])
        return ports
    finally:
        for probe in probes:
            probe.close()


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
