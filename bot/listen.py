"""The `[service] listen` address: checked by the configuration, used by `bot.ops`."""

from __future__ import annotations


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for IPv6) -> (host, port); ValueError naming what is wrong."""
    host, colon, port = value.rpartition(":")
    if not colon or not host:
        raise ValueError("use host:port, e.g. 127.0.0.1:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the port must be a number from 1 to 65535 (got {port!r})")
    if not host or any(character.isspace() or character in "/[]" for character in host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host, int(port)
