"""The feature codes a user dials from the phone (the Asterisk/FreePBX
convention office users know):

=========  ====================================================
``*72N``   forward every call to N (unconditional); ``*73`` off
``*90N``   forward when busy to N; ``*91`` off
``*92N``   forward when not answered to N; ``*93`` off
``*78``    do not disturb on; ``*79`` off
``*8``     pick up a call ringing in one's pickup group
``**E``    pick up the call ringing at extension E (directed pickup)
``*70``    park the call one holds (with ``parking:`` in the dialplan)
``*97``    one's own mailbox (no PIN: the phone authenticated)
``*98``    any mailbox: ``*98`` then mailbox and PIN, or ``*98E`` then the PIN
=========  ====================================================

Dialling a parking slot (``701``) picks the call parked there up: the
engine reports it as the feature ``park_pickup`` too.

Pure: :func:`parse_feature_code` reads the dialled string; the engine
checks the caller's rights and the controller changes the lasting state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

FeatureAction = Literal["forward_on", "forward_off", "dnd_on", "dnd_off", "pickup", "directed_pickup", "park",
                        "park_pickup", "voicemail", "voicemail_login"]
ForwardKind = Literal["always", "busy", "no_answer", "unreachable"]

FORWARD_ON: Final[dict[str, ForwardKind]] = {"*72": "always", "*90": "busy", "*92": "no_answer"}
FORWARD_OFF: Final[dict[str, ForwardKind]] = {"*73": "always", "*91": "busy", "*93": "no_answer"}
DND_ON: Final = "*78"
DND_OFF: Final = "*79"
PICKUP: Final = "*8"
DIRECTED_PICKUP: Final = "**"
PARK: Final = "*70"
VOICEMAIL: Final = "*97"
VOICEMAIL_LOGIN: Final = "*98"
BUILT_IN: Final = frozenset({*FORWARD_ON, *FORWARD_OFF, DND_ON, DND_OFF, PICKUP, PARK, VOICEMAIL, VOICEMAIL_LOGIN})
"""Codes the loader keeps other numbers away from (``**`` is a prefix)."""


@dataclass(frozen=True, slots=True)
class FeatureDialled:
    action: FeatureAction
    code: str
    """The code itself (``*72``)."""
    kind: ForwardKind | None = None
    argument: str | None = None
    """The number after the code: a forward's target, a pickup's extension."""


def parse_feature_code(dialled: str) -> FeatureDialled | None:
    """The feature ``dialled`` asks for, or None when it is no feature code.
    A code that needs a number and has none comes back with ``argument``
    empty, for the engine to refuse (484)."""
    if dialled.startswith(DIRECTED_PICKUP):
        return FeatureDialled("directed_pickup", DIRECTED_PICKUP, argument=dialled[2:])
    code, rest = dialled[:3], dialled[3:]
    if code in FORWARD_ON:
        return FeatureDialled("forward_on", code, FORWARD_ON[code], rest.lstrip("#"))
    if dialled in FORWARD_OFF:
        return FeatureDialled("forward_off", dialled, FORWARD_OFF[dialled])
    if dialled == DND_ON:
        return FeatureDialled("dnd_on", dialled)
    if dialled == DND_OFF:
        return FeatureDialled("dnd_off", dialled)
    if dialled == PICKUP:
        return FeatureDialled("pickup", dialled)
    if dialled == PARK:
        return FeatureDialled("park", dialled)
    if dialled == VOICEMAIL:
        return FeatureDialled("voicemail", dialled)
    if code == VOICEMAIL_LOGIN:
        return FeatureDialled("voicemail_login", code, argument=rest or None)
    return None
