"""In-memory location service: address-of-record -> contact bindings.

This is the hot-path cache. The store (``pbx.store.bindings``) holds the
lasting copy; the registrar reports every change as a ``BindingChange`` so
the edge can write it behind, and ``load`` fills the cache at start-up.
Times are wall-clock seconds (epoch) because they outlive the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.sip.address import Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    aor: str
    contact: str
    """The Contact URI as registered (without angle brackets or params)."""
    expires_at: float
    call_id: str
    cseq: int
    source: Peer
    """Where the REGISTER came from: requests to the phone go there when
    NAT is seen or forced, else to the Contact (``pbx.registrar.destination``)."""
    q: float | None = None
    user_agent: str | None = None
    instance_id: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] = ()
    """The REGISTER's Path (RFC 3327): proxies between the phone and us,
    nearest the phone last. Requests to the phone take it as their route
    set and go to its first entry (the edge that holds the phone's NAT
    mapping or connection)."""

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@dataclass(frozen=True, slots=True, kw_only=True)
class BindingChange:
    """A binding to write (``binding`` set) or delete (``removed`` set)."""

    binding: Binding | None = None
    removed: tuple[str, str] | None = None  # (aor, contact)


class BindingTable:
    def __init__(self) -> None:
        self._by_aor: dict[str, dict[str, Binding]] = {}

    def load(self, bindings: list[Binding], now: float) -> None:
        for binding in bindings:
            if binding.expires_at > now:
                self._by_aor.setdefault(binding.aor, {})[binding.contact] = binding

    def current(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of ``aor``, most recently refreshed last."""
        found = self._by_aor.get(aor)
        if not found:
            return []
        return [b for b in found.values() if b.expires_at > now]

    def registered_from(self, aor: str, peer: Peer, now: float) -> bool:
        """Whether a live binding of ``aor`` was registered from exactly
        ``peer``'s address and port: the phone itself is talking (a guesser
        behind the same NAT has another port; see pbx/registrar/auth.py)."""
        found = self._by_aor.get(aor)
        if not found:
            return False
        return any(b.source.host == peer.host and b.source.port == peer.port and b.expires_at > now
                   for b in found.values())

    def get(self, aor: str, contact: str) -> Binding | None:
        found = self._by_aor.get(aor)
        return found.get(contact) if found else None

    def put(self, binding: Binding) -> None:
        contacts = self._by_aor.setdefault(binding.aor, {})
        contacts.pop(binding.contact, None)  # re-insert: keeps refresh order
        contacts[binding.contact] = binding

    def replace_aor(self, aor: str, bindings: list[Binding], now: float) -> None:
        """Make ``aor``'s bindings exactly ``bindings`` (the store's, after
        another node changed them)."""
        self._by_aor.pop(aor, None)
        for binding in bindings:
            if binding.aor == aor and binding.expires_at > now:
                self.put(binding)

    def remove(self, aor: str, contact: str) -> Binding | None:
        found = self._by_aor.get(aor)
        if not found:
            return None
        removed = found.pop(contact, None)
        if not found:
            del self._by_aor[aor]
        return removed

    def remove_connection(self, connection: int) -> list[Binding]:
        """Bindings that lived on a TCP connection that has closed.

        RFC 5626 §5.2 drops a flow's bindings when the flow fails; without
        outbound we keep the binding (the phone may reconnect) but the edge
        uses this to know which phones it can no longer reach directly.
        """
        return [
            b for contacts in self._by_aor.values() for b in contacts.values() if b.source.connection == connection
        ]

    def connections(self) -> set[int]:
        """The connections registrations live on (TCP, later TLS)."""
        return {b.source.connection for contacts in self._by_aor.values() for b in contacts.values()
                if b.source.connection is not None}

    def sweep(self, now: float) -> list[Binding]:
        """Remove and return every expired binding."""
        expired: list[Binding] = []
        for aor in list(self._by_aor):
            contacts = self._by_aor[aor]
            for contact in [c for c, b in contacts.items() if b.expires_at <= now]:
                expired.append(contacts.pop(contact))
            if not contacts:
                del self._by_aor[aor]
        return expired

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_aor.values())

    def aors(self) -> list[str]:
        return list(self._by_aor)
