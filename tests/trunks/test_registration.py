"""The trunk registration machine on a hand-held clock (no sockets, no sleeps).

The provider's registrar in these tests is built from the server half of
``pbx.sip.digest`` (a real nonce issuer and a real digest check), so what
the machine sends is verified, not just looked at.
"""

from __future__ import annotations

import itertools

import pytest

from pbx.routing.trunk_config import Gateway, Trunk
from pbx.sip import digest
from pbx.sip.message import Header, Request, Response, make_response
from pbx.trunks.registration import (
    Backoff,
    Effect,
    ExpiresRaised,
    Registered,
    RegistrationFailed,
    RegistrationState,
    SendRegister,
    TrunkRegistration,
    Unregistered,
)

REALM = "sip.provider.example"
PASSWORD = "trunk-secret"


def make_trunk(**changes: object) -> Trunk:
    fields: dict[str, object] = {
        "key": "viettel",
        "gateways": (Gateway(host="192.0.2.10", port=5070), Gateway(host="192.0.2.11", port=5072)),
        "username": "02873000000",
        "password": PASSWORD,
        "domain": REALM,
        "register": True,
        "register_expires": 3600,
    }
    fields.update(changes)
    return Trunk(**fields)  # type: ignore[arg-type]


def make_registration(trunk: Trunk | None = None, backoff: Backoff = Backoff(first=10, factor=2, cap=600)
                      ) -> TrunkRegistration:
    counter = itertools.count(1)
    return TrunkRegistration(
        trunk or make_trunk(),
        local_address=lambda transport: ("198.51.100.7", 5060 if transport == "udp" else 5061),
        backoff=backoff,
        token=lambda: f"t{next(counter)}",
    )


class Registrar:
    """The provider's side: challenges, checks digests, grants bindings."""

    def __init__(self, password: str = PASSWORD, *, status: int = 401, nonce_lifetime: float = 300) -> None:
        self.nonces = digest.NonceIssuer(b"k" * 32, lifetime=nonce_lifetime)
        self.password = password
        self.status = status  # 401 (WWW-Authenticate) or 407 (Proxy-Authenticate)
        self.verified: list[Request] = []

    def challenge(self, request: Request, now: float, *, stale: bool = False) -> Response:
        value = digest.format_challenge(REALM, self.nonces.issue(now), digest.Algorithm.MD5, stale=stale)
        header = "www-authenticate" if self.status == 401 else "proxy-authenticate"
        return make_response(request, self.status, to_tag="reg", headers=[(header, value)])

    def authentic(self, request: Request, now: float) -> bool:
        header = "authorization" if self.status == 401 else "proxy-authorization"
        value = request.get(header)
        if value is None:
            return False
        credentials = digest.parse_credentials(value)
        if self.nonces.check(credentials.nonce, credentials.nc, now) is not digest.NonceStatus.VALID:
            return False
        ha1 = digest.ha1(credentials.algorithm, credentials.username, REALM, self.password)
        if credentials.uri != request.uri or not digest.verify(credentials, ha1, request.method):
            return False
        self.nonces.accept(credentials.nonce, credentials.nc, now)
        self.verified.append(request)
        return True

    def answer(self, request: Request, now: float, *, expires: int | None = None) -> Response:
        if not self.authentic(request, now):
            return self.challenge(request, now)
        granted = int(request.get("expires") or "3600") if expires is None else expires
        contact = request.get("contact") or ""
        headers: list[Header] = [("contact", f"{contact};expires={granted}")] if granted else []
        return make_response(request, 200, to_tag="reg", headers=headers)


def sent(effects: list[Effect]) -> SendRegister:
    sends = [e for e in effects if isinstance(e, SendRegister)]
    assert len(sends) == 1, effects
    return sends[0]


def only(effects: list[Effect], kind: type) -> object:
    found = [e for e in effects if isinstance(e, kind)]
    assert len(found) == 1, effects
    return found[0]


def register_fully(registration: TrunkRegistration, registrar: Registrar, now: float) -> Registered:
    """Run start -> 401 -> credentials -> 200."""
    first = sent(registration.start(now)).request
    second = sent(registration.on_response(registrar.answer(first, now), now)).request
    result = only(registration.on_response(registrar.answer(second, now), now), Registered)
    assert isinstance(result, Registered)
    return result


def test_register_answers_the_challenge_and_builds_a_proper_request() -> None:
    registration, registrar = make_registration(), Registrar()
    first = sent(registration.start(0.0))
    request = first.request
    assert first.gateway == Gateway(host="192.0.2.10", port=5070)
    assert request.method == "REGISTER" and request.uri == f"sip:{REALM}"
    assert request.get("from") == f"<sip:02873000000@{REALM}>;tag=t2"
    assert request.get("to") == f"<sip:02873000000@{REALM}>"
    assert request.get("contact") == "<sip:02873000000@198.51.100.7:5060>"
    assert request.get("expires") == "3600"
    assert request.get("authorization") is None
    assert (request.top_via.params["branch"] or "").startswith("z9hG4bK")

    second = sent(registration.on_response(registrar.answer(request, 0.0), 0.0)).request
    assert second.call_id == request.call_id
    assert second.cseq.number == request.cseq.number + 1
    assert second.top_via.params["branch"] != request.top_via.params["branch"]
    done = only(registration.on_response(registrar.answer(second, 0.0), 0.0), Registered)
    assert isinstance(done, Registered) and done.expires == 3600
    assert registrar.verified == [second]
    assert registration.state is RegistrationState.REGISTERED
    assert registration.is_registered(3599.0) and not registration.is_registered(3600.0)


def test_refresh_is_due_before_expiry_and_reuses_the_challenge() -> None:
    registration, registrar = make_registration(), Registrar(nonce_lifetime=10_000)
    done = register_fully(registration, registrar, 100.0)
    # 3600 s granted: refresh 60 s before the end.
    assert done.refresh_at == registration.deadline() == 100.0 + 3540.0
    assert registration.on_timer(3639.0) == []
    refresh = sent(registration.on_timer(3640.0)).request
    # The last challenge is reused with the next nonce count: one round trip.
    credentials = digest.parse_credentials(refresh.get("authorization") or "")
    assert credentials.nc == 2
    again = only(registration.on_response(registrar.answer(refresh, 3640.0), 3640.0), Registered)
    assert isinstance(again, Registered)
    assert registration.refresh_at == 3640.0 + 3540.0


def test_refresh_with_an_expired_nonce_answers_the_new_challenge() -> None:
    registration, registrar = make_registration(), Registrar(nonce_lifetime=300)
    register_fully(registration, registrar, 0.0)
    refresh = sent(registration.on_timer(3540.0)).request
    assert refresh.get("authorization") is not None
    # Our nonce is long gone: the registrar challenges afresh, and that one
    # is answered (it is not the loop of a wrong password).
    again = sent(registration.on_response(registrar.answer(refresh, 3540.0), 3540.0)).request
    assert isinstance(only(registration.on_response(registrar.answer(again, 3540.0), 3540.0), Registered),
                      Registered)
    assert registration.failures == 0


@pytest.mark.parametrize(("granted", "refresh_after"), [(3600, 3540.0), (120, 60.0), (60, 30.0), (10, 5.0)])
def test_refresh_time_follows_the_granted_lifetime(granted: int, refresh_after: float) -> None:
    registration, registrar = make_registration(), Registrar()
    first = sent(registration.start(0.0)).request
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    done = only(registration.on_response(registrar.answer(second, 0.0, expires=granted), 0.0), Registered)
    assert isinstance(done, Registered) and done.expires == granted
    assert done.refresh_at == refresh_after


def test_expires_header_is_used_when_the_contact_has_no_parameter() -> None:
    registration, registrar = make_registration(), Registrar()
    first = sent(registration.start(0.0)).request
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    assert registrar.authentic(second, 0.0)
    ok = make_response(second, 200, to_tag="reg", headers=[("expires", "900")])
    done = only(registration.on_response(ok, 0.0), Registered)
    assert isinstance(done, Registered) and done.expires == 900


def test_wrong_password_is_not_retried_in_a_loop() -> None:
    registration = make_registration(make_trunk(password="not-the-password"))
    registrar = Registrar()
    first = sent(registration.start(0.0)).request
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    effects = registration.on_response(registrar.answer(second, 0.0), 0.0)
    # Challenged again after answering a fresh challenge: no third REGISTER.
    assert not any(isinstance(e, SendRegister) for e in effects)
    failed = only(effects, RegistrationFailed)
    assert isinstance(failed, RegistrationFailed)
    assert (failed.reason, failed.status, failed.failures, failed.retry_at) == ("auth_rejected", 401, 1, 10.0)
    assert registration.state is RegistrationState.BACKING_OFF
    # Each later attempt costs two REGISTERs and backs off further.
    retry_times = []
    now = 10.0
    for _ in range(4):
        request = sent(registration.on_timer(now)).request
        assert request.get("authorization") is None   # the failed challenge was dropped
        request = sent(registration.on_response(registrar.answer(request, now), now)).request
        failed = only(registration.on_response(registrar.answer(request, now), now), RegistrationFailed)
        assert isinstance(failed, RegistrationFailed) and failed.reason == "auth_rejected"
        retry_times.append(failed.retry_at - now)
        now = failed.retry_at
    assert retry_times == [20.0, 40.0, 80.0, 160.0]


def test_stale_challenge_is_answered_again() -> None:
    registration, registrar = make_registration(), Registrar()
    first = sent(registration.start(0.0)).request
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    stale = registrar.challenge(second, 0.0, stale=True)
    third = sent(registration.on_response(stale, 0.0)).request
    assert third.cseq.number == 3
    done = only(registration.on_response(registrar.answer(third, 0.0), 0.0), Registered)
    assert isinstance(done, Registered)


def test_endless_stale_challenges_stop() -> None:
    registration, registrar = make_registration(), Registrar()
    request = sent(registration.start(0.0)).request
    sends = 1
    while True:
        effects = registration.on_response(registrar.challenge(request, 0.0, stale=True), 0.0)
        if not any(isinstance(e, SendRegister) for e in effects):
            break
        request = sent(effects).request
        sends += 1
        assert sends < 10
    failed = only(effects, RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.reason == "too_many_challenges"
    assert sends == 4


def test_proxy_challenge_is_answered_with_proxy_authorization() -> None:
    registration, registrar = make_registration(), Registrar(status=407)
    first = sent(registration.start(0.0)).request
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    assert second.get("proxy-authorization") is not None and second.get("authorization") is None
    assert isinstance(only(registration.on_response(registrar.answer(second, 0.0), 0.0), Registered), Registered)


def test_interval_too_brief_raises_expires_to_min_expires() -> None:
    registration = make_registration(make_trunk(register_expires=60))
    registrar = Registrar()
    first = sent(registration.start(0.0)).request
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    assert registrar.authentic(second, 0.0)
    brief = make_response(second, 423, to_tag="reg", headers=[("min-expires", "600")])
    effects = registration.on_response(brief, 0.0)
    raised = only(effects, ExpiresRaised)
    assert isinstance(raised, ExpiresRaised) and raised.expires == 600
    third = sent(effects).request
    assert third.get("expires") == "600"
    assert third.get("authorization") is not None   # the challenge is reused, nc 2
    done = only(registration.on_response(registrar.answer(third, 0.0), 0.0), Registered)
    assert isinstance(done, Registered) and done.expires == 600
    # Later refreshes keep asking for 600.
    refresh = sent(registration.on_timer(done.refresh_at)).request
    assert refresh.get("expires") == "600"


@pytest.mark.parametrize("min_expires", [None, "30", "60", "999999", "soon"])
def test_unusable_423_backs_off(min_expires: str | None) -> None:
    registration = make_registration(make_trunk(register_expires=60))
    request = sent(registration.start(0.0)).request
    headers: list[Header] = [] if min_expires is None else [("min-expires", min_expires)]
    failed = only(registration.on_response(make_response(request, 423, headers=headers), 0.0), RegistrationFailed)
    assert isinstance(failed, RegistrationFailed)
    assert (failed.reason, failed.status) == ("interval_too_brief", 423)
    assert registration.expires == 60


def test_second_423_in_one_attempt_backs_off() -> None:
    registration = make_registration(make_trunk(register_expires=60))
    request = sent(registration.start(0.0)).request
    request = sent(registration.on_response(make_response(request, 423, headers=[("min-expires", "120")]), 0.0)
                   ).request
    effects = registration.on_response(make_response(request, 423, headers=[("min-expires", "240")]), 0.0)
    assert not any(isinstance(e, SendRegister) for e in effects)
    assert isinstance(only(effects, RegistrationFailed), RegistrationFailed)


def test_timeouts_back_off_exponentially_and_alternate_gateways() -> None:
    registration = make_registration(backoff=Backoff(first=5, factor=2, cap=60))
    now = 0.0
    gateways, delays = [], []
    send = sent(registration.start(now))
    for _ in range(7):
        gateways.append(send.gateway.port)
        failed = only(registration.on_timeout(now + 32.0), RegistrationFailed)
        assert isinstance(failed, RegistrationFailed) and failed.reason == "timeout" and failed.status is None
        delays.append(failed.retry_at - (now + 32.0))
        now = failed.retry_at
        assert registration.deadline() == now
        send = sent(registration.on_timer(now))
    assert gateways == [5070, 5072, 5070, 5072, 5070, 5072, 5070]
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_success_resets_the_back_off() -> None:
    registration, registrar = make_registration(), Registrar()
    request = sent(registration.start(0.0)).request
    failed = only(registration.on_response(make_response(request, 503, headers=[]), 0.0), RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.retry_at == 10.0
    request = sent(registration.on_timer(10.0)).request
    request = sent(registration.on_response(registrar.answer(request, 10.0), 10.0)).request
    assert isinstance(only(registration.on_response(registrar.answer(request, 10.0), 10.0), Registered), Registered)
    assert registration.failures == 0
    assert registration.refresh_at == 3550.0
    refresh = sent(registration.on_timer(3550.0)).request
    failed = only(registration.on_response(make_response(refresh, 500), 3550.0), RegistrationFailed)
    # The count started again: the first back-off step, not the second.
    assert isinstance(failed, RegistrationFailed) and failed.failures == 1 and failed.retry_at == 3560.0
    # Still bound until the old binding runs out.
    assert registration.is_registered(3560.0) and not registration.is_registered(3610.0)


def test_retry_after_is_honoured_within_the_cap() -> None:
    registration = make_registration()
    request = sent(registration.start(0.0)).request
    busy = make_response(request, 503, headers=[("retry-after", "120 (maintenance);duration=60")])
    failed = only(registration.on_response(busy, 0.0), RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.retry_at == 120.0
    request = sent(registration.on_timer(120.0)).request
    huge = make_response(request, 503, headers=[("retry-after", "99999")])
    failed = only(registration.on_response(huge, 120.0), RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.retry_at == 720.0


def test_forbidden_stays_on_the_same_gateway() -> None:
    registration = make_registration()
    request = sent(registration.start(0.0)).request
    only(registration.on_response(make_response(request, 403), 0.0), RegistrationFailed)
    assert sent(registration.on_timer(10.0)).gateway.port == 5070


def test_late_provisional_and_foreign_responses_change_nothing() -> None:
    registration, registrar = make_registration(), Registrar()
    first = sent(registration.start(0.0)).request
    assert registration.on_response(make_response(first, 100), 0.0) == []
    second = sent(registration.on_response(registrar.answer(first, 0.0), 0.0)).request
    # The 401 to the first REGISTER, retransmitted: not the CSeq awaited.
    assert registration.on_response(registrar.challenge(first, 0.0), 0.0) == []
    assert registration.on_timeout(0.0) != []   # the awaited one can still time out
    assert registration.state is RegistrationState.BACKING_OFF
    assert registration.on_response(registrar.answer(second, 0.0), 0.0) == []


def test_stop_removes_the_binding() -> None:
    registration, registrar = make_registration(), Registrar()
    register_fully(registration, registrar, 0.0)
    removal = sent(registration.stop(50.0)).request
    assert removal.get("expires") == "0"
    assert removal.get("contact") == "<sip:02873000000@198.51.100.7:5060>"
    assert removal.get("authorization") is not None
    assert registration.deadline() is None
    done = only(registration.on_response(registrar.answer(removal, 50.0), 50.0), Unregistered)
    assert isinstance(done, Unregistered) and done.confirmed and done.status == 200
    assert registration.state is RegistrationState.STOPPED
    assert not registration.is_registered(51.0)
    assert registration.stop(52.0) == []


def test_stop_answers_a_challenge_to_the_removal_once() -> None:
    registration, registrar = make_registration(), Registrar()
    register_fully(registration, registrar, 0.0)
    removal = sent(registration.stop(50.0)).request
    again = sent(registration.on_response(registrar.challenge(removal, 50.0), 50.0)).request
    assert again.get("expires") == "0"
    done = only(registration.on_response(registrar.answer(again, 50.0), 50.0), Unregistered)
    assert isinstance(done, Unregistered) and done.confirmed


def test_stop_with_wrong_credentials_gives_up() -> None:
    registration = make_registration(make_trunk(password="wrong"))
    registrar = Registrar()
    first = sent(registration.start(0.0)).request
    sent(registration.on_response(registrar.answer(first, 0.0), 0.0))
    removal = sent(registration.stop(1.0)).request   # a REGISTER was out: remove to be sure
    again = sent(registration.on_response(registrar.answer(removal, 1.0), 1.0)).request
    done = only(registration.on_response(registrar.answer(again, 1.0), 1.0), Unregistered)
    assert isinstance(done, Unregistered) and not done.confirmed
    assert registration.state is RegistrationState.STOPPED


def test_stop_without_a_binding_sends_nothing() -> None:
    registration = make_registration()
    request = sent(registration.start(0.0)).request
    only(registration.on_timeout(32.0), RegistrationFailed)
    assert registration.stop(33.0) == []
    assert registration.state is RegistrationState.STOPPED
    assert registration.on_response(make_response(request, 200), 34.0) == []


def test_removal_timing_out_is_reported() -> None:
    registration, registrar = make_registration(), Registrar()
    register_fully(registration, registrar, 0.0)
    sent(registration.stop(10.0))
    done = only(registration.on_timeout(42.0), Unregistered)
    assert isinstance(done, Unregistered) and not done.confirmed and done.status is None


def test_tcp_gateway_gets_tcp_via_and_contact() -> None:
    trunk = make_trunk(gateways=(Gateway(host="192.0.2.10", port=5071, transport="tcp"),))
    request = sent(make_registration(trunk).start(0.0)).request
    assert request.top_via.transport == "TCP"
    assert request.get("contact") == "<sip:02873000000@198.51.100.7:5061;transport=tcp>"


def test_a_trunk_without_credentials_cannot_register() -> None:
    with pytest.raises(ValueError, match="credentials"):
        make_registration(make_trunk(username=None, password=None, register=False))


@pytest.mark.parametrize(("failures", "delay"), [(1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0), (7, 600.0), (50, 600.0)])
def test_backoff_sequence(failures: int, delay: float) -> None:
    assert Backoff(first=10, factor=2, cap=600).delay(failures) == delay
