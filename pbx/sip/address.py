"""Where a message came from or goes to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote transport address.

    ``connection`` names the TCP/TLS connection on this node a message
    arrived on (§18.2.2: responses, and requests to a phone registered over
    it, go back on that connection); None for UDP.
    """

    transport: str  # "udp", "tcp" or "tls", lower case
    host: str
    port: int
    connection: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"
