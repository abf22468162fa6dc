"""Loader checks of the routing sections: errors with exact places for
unknown references, bad patterns, dates, time zones and colliding numbers;
warnings for rules that can never match. Run from tests/routing/data like
tests/routing/test_loader.py, so messages carry the short relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.routing.loader import check_dialplan, load_dialplan, read_dialplan
from tests.routing.test_loader import DATA, EXAMPLE


@pytest.fixture(autouse=True)
def in_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)


def test_every_routing_error_with_its_place() -> None:
    assert [str(p) for p in check_dialplan("routing_errors.yaml")] == [
        "routing_errors.yaml:3:11: unknown time zone 'Asia/Hochiminh'; did you mean 'Asia/Ho_Chi_Minh'? (use an IANA name such as Asia/Ho_Chi_Minh or Asia/Taipei)",
        "routing_errors.yaml:5:42: department 'sales' names unknown class of service 'salse'",
        "routing_errors.yaml:7:84: extension '1001' names unknown class of service 'nobody'",
        "routing_errors.yaml:8:3: extension '113' collides with emergency numbers number_plans.vn[0] (11[345]) at routing_errors.yaml:13:17",
        "routing_errors.yaml:10:3: call class 'mobile' is built in; choose another name",
        "routing_errors.yaml:12:3: warning: number plan 'vn' has no country_code: lists see its numbers in E.164 only where their trunk is sent E.164, and black lists refuse the rest (unverifiable_number)",
        "routing_errors.yaml:13:17: warning: no route takes these emergency numbers (11[345]): calls to them are refused with 404",
        "routing_errors.yaml:14:44: number plan 'vn' names unknown call class 'mobil'; did you mean 'mobile'?",
        "routing_errors.yaml:15:17: pattern '0[35': '[' is never closed (character 2)",
        "routing_errors.yaml:17:9: pattern '12a': 'a' is not allowed; use digits, * # +, X Z N, [..], a final . or !, or start with ^ for a regular expression (character 3)",
        "routing_errors.yaml:18:13: 'blacklist' names unknown number list 'nolist'",
        "routing_errors.yaml:20:25: the holidays package has no public holidays for 'XX'",
        "routing_errors.yaml:20:37: calendar 'vn': '2027-02-30' must be YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD",
        "routing_errors.yaml:20:60: calendar 'vn': '13-01' is not a lunar month and day",
        "routing_errors.yaml:23:12: schedule 'hours': days 'mon-fry': use mon tue wed thu fri sat sun, ranges (mon-fri) and commas",
        "routing_errors.yaml:23:57: schedule 'hours': slot 'sat 12:00-12:00' is empty (starts when it ends)",
        "routing_errors.yaml:24:17: schedule 'hours' names unknown calendar 'tw'",
        "routing_errors.yaml:26:16: classes of service extend each other in a circle: a -> b -> a",
        "routing_errors.yaml:26:26: class of service 'a': emergency calls can never be denied",
        "routing_errors.yaml:28:23: class of service 'c' names unknown schedule 'hour'; did you mean 'hours'?",
        "routing_errors.yaml:28:37: class of service 'c' names unknown call class 'internationl'; did you mean 'international'?",
        "routing_errors.yaml:28:53: class of service 'c': a 'when' rule needs exactly one of 'during' or 'outside' (a schedule)",
        "routing_errors.yaml:30:3: feature code '1001' is also extension '1001' at routing_errors.yaml:7:3",
        "routing_errors.yaml:32:3: trunk 't1' needs both username and password, or neither",
        "routing_errors.yaml:36:39: route 'r1' names unknown trunk 't2'",
        "routing_errors.yaml:37:12: route name 'r1' is already used at routing_errors.yaml:36:12",
        "routing_errors.yaml:37:25: warning: route 'r1' can never match: no number plan gives the classes mobile",
        "routing_errors.yaml:39:32: inbound number '+842873000100' names unknown extension '1002'; did you mean '1001'?",
        "routing_errors.yaml:40:40: inbound number '+842873000101': 'during' needs an 'otherwise' target for the rest of the time",
    ]


def test_warnings_with_their_place_and_the_plan_still_loads() -> None:
    result = read_dialplan("routing_warnings.yaml")
    assert result.errors == ()
    assert [str(p) for p in result.warnings] == [
        "routing_warnings.yaml:10:3: warning: number plan 'vn' has no country_code: lists see its numbers in E.164 only where their trunk is sent E.164, and black lists refuse the rest (unverifiable_number)",
        "routing_warnings.yaml:12:17: warning: no route takes these premium numbers (1900 XXXX): calls to them are refused with 404",
        "routing_warnings.yaml:14:17: warning: this entry can never match: every number it matches is taken first by number_plans.vn[2] (00.) at routing_warnings.yaml:13:17",
        "routing_warnings.yaml:20:44: warning: class of service 'sales' may dial only white-listed numbers but has no whitelist: only internal and emergency calls will work",
        "routing_warnings.yaml:20:57: warning: class of service 'sales': this 'when' rule allows and denies nothing",
        "routing_warnings.yaml:26:56: warning: trunk 't1': this rewrite can never apply: rewrite 0 (match '0') takes its numbers first",
        "routing_warnings.yaml:29:5: warning: route 'mobile-09' can never match: route 'mobile' at routing_warnings.yaml:28:5 takes all its calls first",
        "routing_warnings.yaml:30:27: warning: route 'free' can never match: no number plan gives the classes toll_free",
    ]
    plan = result.dialplan
    assert plan is not None
    assert [route.name for route in plan.routes] == ["mobile", "mobile-09", "free", "world"]


BASE = (
    "domain: pbx.example.com\n"
    "departments:\n"
    "  sales: {name: Sales}\n"
    "extensions:\n"
    "  1001: {name: An, department: sales, password: 'correct horse'}\n"
)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            "classes_of_service:\n  a: {extends: nobody, whitelist: [missing]}\n",
            [
                "plan.yaml:7:16: class of service 'a' names unknown class of service 'nobody'",
                "plan.yaml:7:36: class of service 'a' names unknown number list 'missing'",
            ],
            id="unknown-extends-and-list",
        ),
        pytest.param(
            "trunks:\n  t: {gateways: [{host: 127.0.0.1}]}\n"
            "routes:\n  - {name: r, departments: [sale], trunk: t}\n",
            ["plan.yaml:9:29: route 'r' names unknown department 'sale'; did you mean 'sales'?"],
            id="route-unknown-department",
        ),
        pytest.param(
            "schedules:\n  h: {open: [{days: mon, from: '08:00', to: '09:00'}]}\n"
            "inbound:\n"
            "  '100': {extension: '1001', otherwise: {extension: '1001'}}\n"
            "  '101': {extension: '1001', during: h, outside: h, otherwise: {extension: '1001'}}\n",
            [
                "plan.yaml:9:30: inbound number '100': 'otherwise' needs 'during' or 'outside' (a schedule)",
                "plan.yaml:10:41: inbound number '101': give 'during' or 'outside', not both",
            ],
            id="inbound-schedule-rules",
        ),
        pytest.param(
            "calendars:\n  c: {subdivision: HN, lunar: ['12-29..01-05', '01-31']}\n",
            [
                "plan.yaml:7:7: 'subdivision' needs 'public_holidays'",
                "plan.yaml:7:48: calendar 'c': '01-31' is not a lunar month and day",
            ],
            id="calendar-rules",
        ),
        pytest.param(
            "number_plans:\n  vn: [{pattern: '1X', class: local}]\n  tw: [{pattern: '1X', class: local}]\n",
            ["plan.yaml:3:3: department 'sales' names no number_plan and there is no default"
             " 'number_plan' to choose among tw, vn",
             "plan.yaml:7:18: warning: no route takes these local numbers (1X): calls to them are refused with 404",
             "plan.yaml:8:18: warning: no route takes these local numbers (1X): calls to them are refused with 404"],
            id="which-number-plan",
        ),
        pytest.param(
            "number_plans:\n  vn: [{pattern: '10X!', class: premium}, {pattern: '^\\*9[0-9]$', class: emergency}]\n"
            "feature_codes: {'*97': voicemail}\n"
            "trunks:\n  t: {gateways: [{host: 127.0.0.1}]}\n"
            "routes:\n  - {name: r, trunk: t}\n",
            [
                "plan.yaml:5:3: extension '1001' collides with premium numbers number_plans.vn[0] (10X!)"
                " at plan.yaml:7:18",
                "plan.yaml:8:17: feature code '*97' collides with emergency numbers number_plans.vn[1]"
                " (^\\*9[0-9]$) at plan.yaml:7:53",
            ],
            id="keypad-collisions",
        ),
        pytest.param(
            "trunks:\n  t:\n    gateways: [{host: 127.0.0.1}]\n    password: 'hunter2-trunk'\n"
            "    register: true\n",
            [
                "plan.yaml:7:3: trunk 't' needs both username and password, or neither",
                "plan.yaml:10:15: trunk 't' registers, so it needs a username and password",
            ],
            id="trunk-credentials",
        ),
        pytest.param(
            "trunks:\n  t:\n    gateways: [{host: 127.0.0.1, port: 70000, transport: sctp}]\n",
            [
                "plan.yaml:8:40: 'gateways[0].port' of trunk 't' must be at most 65535, not 70000",
                "plan.yaml:8:58: 'gateways[0].transport' of trunk 't' must be one of 'udp', 'tcp', 'tls'",
            ],
            id="gateway-schema",
        ),
        pytest.param(
            "routes:\n  - {name: r, pattern: 0912345678, trunk: t}\n",
            [
                "plan.yaml:7:24: 'routes[0].pattern' must be a string, not an integer; put the value in quotes",
                "plan.yaml:7:43: route 'r' names unknown trunk 't'",
            ],
            id="unquoted-number",
        ),
    ],
)
def test_more_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, expected: list[str]) -> None:
    (tmp_path / "plan.yaml").write_text(BASE + extra, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    problems = check_dialplan("plan.yaml")
    assert [str(p) for p in problems] == expected
    assert all("hunter2" not in str(p) for p in problems)


def test_routes_from_included_files_follow_in_include_order(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(
        BASE + "include: [more.yaml]\n"
        "number_plans:\n  vn: [{pattern: '0X.', class: national}]\n"
        "trunks:\n  t: {gateways: [{host: 127.0.0.1}]}\n"
        "routes:\n  - {name: first, pattern: '09X.', trunk: t}\n",
        encoding="utf-8",
    )
    (tmp_path / "more.yaml").write_text("routes:\n  - {name: second, pattern: '0X.', trunk: t}\n", encoding="utf-8")
    plan = load_dialplan(tmp_path / "main.yaml")
    assert [route.name for route in plan.routes] == ["first", "second"]
    assert plan.place("routes.second") == f"{tmp_path / 'more.yaml'}:2:5"


def test_example_trunks_routes_and_inbound_are_built() -> None:
    result = read_dialplan(EXAMPLE)
    assert result.problems == ()
    plan = result.dialplan
    assert plan is not None
    viettel = plan.trunks["viettel"]
    assert [(g.host, g.port, g.transport) for g in viettel.gateways] == [
        ("127.0.0.1", 5070, "udp"), ("127.0.0.1", 5072, "udp")]
    assert (viettel.username, viettel.register, viettel.register_expires, viettel.invite_timeout) == (
        "02873000000", True, 3600, 8.0)
    assert viettel.sip_domain == "sip.provider.example"
    assert viettel.password is not None and viettel.password not in repr(viettel)
    assert viettel.outbound_number("0912345678") == "+84912345678"
    assert viettel.outbound_number("0081312345678") == "+81312345678"
    assert viettel.outbound_number("38221234") == "+842838221234"
    assert plan.trunks["cht"].username is None
    assert plan.routes[0].departments == frozenset({"taipei"})
    assert set(plan.inbound) == {"+842873000100", "+842873000101", "+842873000200", "+842873000300", "+842873000604",
                                 "0227200100"}
    assert plan.departments["taipei"].number_plan == "taiwan"
    assert plan.extensions["1005"].class_of_service == "intern"
    assert str(plan.timezone) == "Asia/Ho_Chi_Minh"
    assert plan.place("routes.vn-mobile") is not None


def test_trunk_inbound_sources_are_networks_and_never_everyone(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("""\
domain: pbx.example.com
trunks:
  t:
    gateways: [{host: 127.0.0.1}]
    inbound_sources: [203.0.113.0/24, "2001:db8::1", not-an-address, 0.0.0.0/0]
""")
    errors = [f"{p.line}:{p.column}: {p.message}" for p in check_dialplan(path) if p.is_error]
    assert errors == [
        "5:54: trunk 't': inbound source 'not-an-address' is not an IP address or network (CIDR)",
        "5:70: trunk 't': inbound source '0.0.0.0/0' is the whole Internet: anyone could call in as the provider",
    ]
    path.write_text(path.read_text().replace(", not-an-address, 0.0.0.0/0", ""))
    sources = load_dialplan(path).trunks["t"].inbound_sources
    assert [str(n) for n in sources] == ["203.0.113.0/24", "2001:db8::1/128"]


def test_trunk_gateway_tls_settings_are_checked_and_loaded(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "plan.yaml"
    path.write_text(f"""\
domain: pbx.example.com
trunks:
  secure:
    gateways:
      - {{host: sip.provider.test, transport: tls, tls_ca_file: "{ca}", tls_pins: ["{'AB:' * 31}AB"]}}
  plain:
    gateways:
      - {{host: 192.0.2.7, tls_server_name: sip.provider.test}}
  missing:
    gateways:
      - {{host: 192.0.2.8, transport: tls, tls_ca_file: /nowhere/ca.pem, tls_pins: [nothex]}}
""")
    errors = [f"{p.line}:{p.column}: {p.message}" for p in check_dialplan(path) if p.is_error]
    assert errors == [
        "8:27: trunk 'plain': tls_server_name needs transport: tls",
        "11:56: trunk 'missing': tls_ca_file '/nowhere/ca.pem' is not a file (a relative path is taken from the"
        " directory the server runs in)",
        "11:84: 'gateways[0].tls_pins[0]' of trunk 'missing' must be a SHA-256 in hex (64 digits, colons allowed)",
    ]
    path.write_text(path.read_text().replace("/nowhere/ca.pem", str(ca)).replace(", tls_pins: [nothex]", "")
                    .replace(", tls_server_name: sip.provider.test", ""))
    gateway = load_dialplan(path).trunks["secure"].gateways[0]
    assert (gateway.transport, gateway.port, gateway.tls_ca_file) == ("tls", 5061, str(ca))
    assert gateway.tls_pins == ("ab" * 32,)
