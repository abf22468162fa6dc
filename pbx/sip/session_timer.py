"""Session timers (RFC 4028) as the B2BUA relays them: pure decisions.

The PBX does not refresh sessions itself. It passes Session-Expires, Min-SE
and the ``timer`` option tag between the legs, acting on them as RFC 4028
§8 lets a proxy act, and watches the refreshes go by:

- a request whose Session-Expires is below our floor gets 422 with our
  Min-SE (§8.1); otherwise Min-SE is raised to our floor (and to the floor
  the other leg taught us with a 422) before it is relayed;
- a longer interval than we want is shortened to ``session_expires``, never
  below Min-SE (§8.1); a caller that supports timers but names no interval
  is given ``session_expires`` (§8.1);
- a 2xx without Session-Expires, to a request that had one from a caller
  that supports timers, gets ``Session-Expires: N;refresher=uac`` and
  ``Require: timer`` on its way back (§8.2), so the caller refreshes;
- the interval of the last 2xx is the one watched: with no successful
  refresh within ``interval - min(32, interval / 3)`` seconds (§10, what
  the side that does not refresh waits before its BYE) the call is dead.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.sip.message import Header, Message, split_list

TIMER_TAG = "timer"
SESSION_HEADERS = frozenset({"session-expires", "min-se"})


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A Session-Expires value (§4): delta-seconds and who refreshes."""

    interval: int
    refresher: str | None  # "uac", "uas" or None (not chosen yet)

    def __str__(self) -> str:
        return f"{self.interval};refresher={self.refresher}" if self.refresher else str(self.interval)


def parse_session_expires(value: str | None) -> SessionExpires | None:
    """The parsed header; None when absent or not a valid value (a bad
    value is treated as absent rather than failing the call)."""
    if value is None:
        return None
    delta, *params = (part.strip() for part in value.split(";"))
    if not delta.isdigit() or len(delta) > 10:
        return None
    refresher = None
    for param in params:
        name, _, text = param.partition("=")
        if name.strip().lower() == "refresher" and text.strip().lower() in ("uac", "uas"):
            refresher = text.strip().lower()
    return SessionExpires(int(delta), refresher)


def parse_min_se(value: str | None) -> int | None:
    if value is None:
        return None
    delta = value.split(";", 1)[0].strip()
    return int(delta) if delta.isdigit() and len(delta) <= 10 else None


def _has_tag(message: Message, header: str) -> bool:
    return any(TIMER_TAG == token.lower() for value in message.get_all(header) for token in split_list(value))


def supports_timer(message: Message) -> bool:
    """Supported (or Require) lists the ``timer`` option tag (§7.1)."""
    return _has_tag(message, "supported") or _has_tag(message, "require")


def too_small(request: Message, floor: int) -> bool:
    """True when the request asks for an interval below ``floor``: answer
    422 with ``Min-SE: floor`` (§8.1, §9)."""
    asked = parse_session_expires(request.get("session-expires"))
    return asked is not None and asked.interval < floor


def interval_refusal(request: Message, floor: int) -> list[Header] | None:
    """The headers of the 422 that ``request`` gets for an interval below
    ``floor`` (§8.1), or None when its interval will do."""
    return [("min-se", str(floor))] if too_small(request, floor) else None


def request_headers(
    request: Message, *, session_expires: int, floor: int, peer_floor: int | None = None,
) -> list[Header]:
    """Session timer headers for the copy of ``request`` sent to the other leg.

    ``floor`` is our Min-SE, ``peer_floor`` the Min-SE the other leg asked
    for in an earlier 422. ``session_expires`` is the interval we want.
    """
    asked = parse_session_expires(request.get("session-expires"))
    supports = supports_timer(request)
    min_se = max(parse_min_se(request.get("min-se")) or 0, floor, peer_floor or 0)
    headers: list[Header] = []
    if supports:
        headers.append(("supported", TIMER_TAG))
    if _has_tag(request, "require"):
        headers.append(("require", TIMER_TAG))
    if asked is None and not supports:
        return headers  # the caller cannot refresh: leave timers to the callee
    interval = session_expires if asked is None else min(asked.interval, session_expires)
    refresher = None if asked is None else asked.refresher
    headers.append(("session-expires", str(SessionExpires(max(interval, min_se), refresher))))
    headers.append(("min-se", str(min_se)))
    return headers


def response_headers(origin: Message, relayed: Message, response: Message) -> tuple[list[Header], int | None]:
    """Headers for relaying the 2xx ``response`` (to ``relayed``, our copy
    of the originator's ``origin``) back to the originator, and the session
    interval now in force (None: no session timer)."""
    answered = parse_session_expires(response.get("session-expires"))
    if answered is not None:
        headers: list[Header] = [("session-expires", str(answered))]
        if answered.refresher == "uac" or _has_tag(response, "require"):
            headers.append(("require", TIMER_TAG))  # §9: the UAC must refresh
        return headers, answered.interval
    sent = parse_session_expires(relayed.get("session-expires"))
    if sent is not None and supports_timer(origin):
        # §8.2: the callee ignored timers; the caller, who supports them,
        # refreshes, so dead calls are still found.
        chosen = SessionExpires(sent.interval, "uac")
        return [("session-expires", str(chosen)), ("require", TIMER_TAG)], sent.interval
    return [], None


def retry_headers(invite: Message, min_se: int) -> list[Header]:
    """Session-Expires and Min-SE for retrying an INVITE after a 422 that
    asked for ``min_se`` (§7.4): the interval raised to it, the refresher kept."""
    asked = parse_session_expires(invite.get("session-expires"))
    refresher = asked.refresher if asked is not None else None
    interval = max(min_se, asked.interval if asked is not None else 0)
    return [("session-expires", str(SessionExpires(interval, refresher))), ("min-se", str(min_se))]


def expiry_delay(interval: int) -> float:
    """Seconds after a refresh at which the session counts as dead (§10)."""
    return interval - min(32.0, interval / 3)
