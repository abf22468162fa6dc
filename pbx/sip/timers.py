"""Transaction timer values: RFC 3261 §17 Table 4, and timers L and M of RFC 6026.

T1 estimates the round-trip time, T2 caps the retransmission interval of
non-INVITE requests and of INVITE responses, T4 is the longest a message may
live in the network. Every other timer is derived from these three:

=====  ==================  ===============================================
Timer  value               meaning
=====  ==================  ===============================================
A      T1, doubling        INVITE request retransmit, UDP only (§17.1.1.2)
B      64*T1               INVITE transaction timeout (§17.1.1.2)
D      >32 s UDP, 0 TCP    wait for response retransmits (§17.1.1.2)
E      T1, doubling to T2  non-INVITE request retransmit, UDP only (§17.1.2.2)
F      64*T1               non-INVITE transaction timeout (§17.1.2.2)
G      T1, doubling to T2  INVITE final response retransmit, UDP (§17.2.1)
H      64*T1               wait for ACK receipt (§17.2.1)
I      T4 UDP, 0 TCP       wait for ACK retransmits (§17.2.1)
J      64*T1 UDP, 0 TCP    wait for non-INVITE request retransmits (§17.2.2)
K      T4 UDP, 0 TCP       wait for response retransmits (§17.1.2.2)
L      64*T1               Accepted INVITE server: absorb retransmits (RFC 6026 §8.7)
M      64*T1               Accepted INVITE client: take 2xx retransmits (RFC 6026 §8.4)
=====  ==================  ===============================================

The module constants hold the default values; ``TimerValues`` derives the same
set from other T1/T2/T4 (a LAN deployment may lower T1, §17.1.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

T1: Final = 0.5  # RTT estimate (§17.1.1.1)
T2: Final = 4.0  # cap on non-INVITE request and INVITE response retransmits
T4: Final = 5.0  # longest a message may live in the network

TIMER_A: Final = T1  # initial interval; doubles with no cap
TIMER_B: Final = 64 * T1
TIMER_D: Final = 32.0  # UDP; 0 on reliable transports
TIMER_E: Final = T1  # initial interval; doubles up to T2
TIMER_F: Final = 64 * T1
TIMER_G: Final = T1  # initial interval; doubles up to T2
TIMER_H: Final = 64 * T1
TIMER_I: Final = T4  # UDP; 0 on reliable transports
TIMER_J: Final = 64 * T1  # UDP; 0 on reliable transports
TIMER_K: Final = T4  # UDP; 0 on reliable transports
TIMER_L: Final = 64 * T1
TIMER_M: Final = 64 * T1


@dataclass(frozen=True, slots=True)
class TimerValues:
    """The timers of Table 4 computed from ``t1``, ``t2`` and ``t4``.

    Methods taking ``reliable`` give the value for that kind of transport;
    the retransmission timers (A, E, G) run only on unreliable transports and
    return their first interval.
    """

    t1: float = T1
    t2: float = T2
    t4: float = T4

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0):
            raise ValueError(f"need 0 < T1 <= T2 and T4 >= 0, got T1={self.t1} T2={self.t2} T4={self.t4}")

    @property
    def a(self) -> float:
        return self.t1

    @property
    def b(self) -> float:
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        # §17.1.1.2: "at least 32 seconds for unreliable transports".
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def e(self) -> float:
        return self.t1

    @property
    def f(self) -> float:
        return 64 * self.t1

    @property
    def g(self) -> float:
        return self.t1

    @property
    def h(self) -> float:
        return 64 * self.t1

    def i(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    def j(self, reliable: bool) -> float:
        return 0.0 if reliable else 64 * self.t1

    def k(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        return 64 * self.t1

    @property
    def m(self) -> float:
        return 64 * self.t1


__all__ = [
    "T1",
    "T2",
    "T4",
    "TIMER_A",
    "TIMER_B",
    "TIMER_D",
    "TIMER_E",
    "TIMER_F",
    "TIMER_G",
    "TIMER_H",
    "TIMER_I",
    "TIMER_J",
    "TIMER_K",
    "TIMER_L",
    "TIMER_M",
    "TimerValues",
]
