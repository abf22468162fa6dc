# Build, test and run the PBX.  Works on a fresh Debian machine, as root or
# with sudo, without a terminal:  make test
#
#   make venv    .venv with the package (editable) and its test extras
#   make deps    Debian packages the tests use (SIPp; linphone-cli; kamailio; espeak-ng
#                and sox for prompts; slapd and ldap-utils for the LDAP sync
#                tests; chromium for the browser tests); starts PostgreSQL if
#                it is installed but stopped
#   make lint    mypy --strict over pbx, tests and bench
#   make test    lint, then the whole pytest suite
#   make run     serve dialplans/example.yaml (DIALPLAN=, DB=, LISTEN= to change)
#                on UDP/TCP 5060 and TLS 5061 (a self-signed certificate is
#                made in var/tls on first start; TLS_CERT=, TLS_KEY= for
#                yours); call 800 for the auto attendant; the web console on
#                http://127.0.0.1:8080/ (HTTP= to change, HTTP= empty: off)
#   make cluster Kamailio on udp:127.0.0.1:5060 and two nodes (5071, 5072)
#                sharing PostgreSQL (scripts/cluster.sh; needs PostgreSQL)
#   make bench   authenticated REGISTERs/s, PBX and Kamailio as the reference (BENCH_ARGS=)
#   make bench-calls  calls/s and concurrent calls, PBX and Sippy B2BUA
#                (about an hour; CALL_BENCH_ARGS=--quick for a few minutes)
#   make prompts regenerate pbx/ivr/prompts/*/*.wav (espeak-ng + sox)
#   make clean   caches and build output;  make distclean  also .venv and var/

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DIALPLAN ?= dialplans/example.yaml
DB ?= sqlite:///var/pbx.sqlite3
# Space-separated, e.g. LISTEN="udp:127.0.0.1:5060 tcp:127.0.0.1:5060".
LISTEN ?= udp:0.0.0.0:5060 tcp:0.0.0.0:5060 tls:0.0.0.0:5061
TLS_CERT ?= var/tls/pbx.crt
TLS_KEY ?= var/tls/pbx.key
# The web console and API; its admin's one-time password is printed at the
# first start. Session cookies are Secure: browsers keep them over plain
# http:// on this host only; elsewhere serve HTTPS (pbx serve --http-cert).
HTTP ?= 127.0.0.1:8080
BENCH_ARGS ?=
BENCH_RESULTS ?= bench/results/register_rate.json
CALL_BENCH_ARGS ?=

# apt-get needs root: use sudo only when we are not root already.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Another apt/dpkg run (unattended upgrades on a fresh machine) holds the
# lock: wait for it, up to 10 minutes, instead of failing.
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

# Let Python cache compiled modules (__pycache__, ignored by git). Some
# shells set PYTHONDONTWRITEBYTECODE; then every process the tests start
# (each `pbx serve`, `pbx cdr list`, phone) compiled the whole package from
# source again: about 0.4 s of CPU each, hundreds of times per run.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv deps lint test run cluster bench bench-calls prompts clean distclean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

# fail2ban-regex checks the shipped fail2ban filter against real log lines
# (tests/e2e/test_lockout.py). Only unpacked under var/tools: installing the
# fail2ban package would start a banning daemon on the developer's machine.
F2B_DIR := var/tools/fail2ban
F2B_REGEX := $(F2B_DIR)/usr/bin/fail2ban-regex

deps:
	@if ! command -v sipp >/dev/null 2>&1; then \
		echo "installing SIPp (Debian package sip-tester)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends sip-tester; \
	fi
	@if ! command -v linphonec >/dev/null 2>&1; then \
		echo "installing linphone-cli (linphonec: the auto attendant's Linphone test)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends linphone-cli; \
	fi
	@if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then \
		echo "installing espeak-ng and sox (prompt regeneration: pbx/ivr/make_prompts.py)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends espeak-ng sox; \
	fi
	@if ! [ -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then \
		echo "installing slapd and ldap-utils (the LDAP sync tests start their own slapd; no system directory is set up)"; \
		echo "slapd slapd/no_configuration boolean true" | $(SUDO) debconf-set-selections; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends slapd ldap-utils; \
	fi
	@if ! command -v kamailio >/dev/null 2>&1 && ! [ -x /usr/sbin/kamailio ]; then \
		echo "installing kamailio (the edge proxy of the cluster tests and make cluster, the reference registrar of make bench; its system service is left stopped and disabled: the tests start their own)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends kamailio; \
		$(SUDO) systemctl disable --now kamailio 2>/dev/null \
			|| { $(SUDO) service kamailio stop; $(SUDO) update-rc.d kamailio disable; } >/dev/null 2>&1 || true; \
	fi
	@if ! ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1; then \
		echo "installing kamailio-tls-modules (TLS at the cluster's edge: its e2e test and make cluster)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends kamailio-tls-modules; \
	fi
	@if ! [ -x /usr/bin/chromium ]; then \
		echo "installing chromium (the web console's browser tests, driven by Playwright)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends chromium; \
	fi
	@if ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then \
		echo "installing fonts-noto-cjk (Chinese names in the browser tests' screenshots, not empty boxes)"; \
		$(APT_GET) update; \
		$(APT_GET) install -y --no-install-recommends fonts-noto-cjk; \
	fi
	@if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 \
		&& command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then \
		echo "starting PostgreSQL"; \
		for version in $$(ls /etc/postgresql); do \
			$(SUDO) pg_ctlcluster --skip-systemctl-redirect "$$version" main start || true; \
		done; \
	fi
	@if [ ! -f $(F2B_REGEX) ]; then \
		echo "fetching fail2ban-regex (unpacked under $(F2B_DIR), not installed)"; \
		mkdir -p $(F2B_DIR); \
		cd $(F2B_DIR); \
		apt-get download fail2ban >/dev/null 2>&1 || { $(APT_GET) update && apt-get download fail2ban; }; \
		dpkg -x fail2ban_*.deb . && rm -f fail2ban_*.deb; \
	fi
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
		|| echo "note: no PostgreSQL on 127.0.0.1:5432: the tests marked postgres will be skipped"

lint: venv
	$(BIN)/mypy --strict pbx tests bench

# Two passes: the suite on $(TEST_WORKERS) workers (pytest-xdist, an idle
# worker takes tests queued for a busy one; the end-to-end tests start
# first, see tests/conftest.py), then the SIPp loads (-m load) alone, since
# they measure what one server carries and must not share the CPU. pytest
# exits 5 when a pass collected no test: not a failure.
# Four workers on two cores: the end-to-end tests spend about half their
# time waiting on phones, prompts and timers (user+sys 142 s over 282 s of
# wall time, run alone), so four keep both cores busy; on 2026-12-07 the
# first pass took 19.7 min on four against 29.4 on two, the machine shared.
# Later that day, with bytecode cached (above) and a cheaper server start,
# the whole `make test` on an idle machine, installs already done: 9.5 min
# (lint, first pass 7.7 min, load pass 1.7 min); that night 8.5 min (first
# pass 6.8 min, 3,338 tests; load pass 1.7 min), a valgrind run beside it.
# Late on 2026-12-07, on a machine 2-3.7 times slower by the benches' references,
# idle: 10.9 min (first pass 8.8 min, 3,350 tests; load pass 1.9 min).
TEST_WORKERS ?= 4
test: venv deps lint
	@status=0; \
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not load" --durations=25 || status=$$?; \
	if [ $$status -eq 5 ]; then status=0; fi; \
	load=0; $(BIN)/pytest -q -m load --durations=10 || load=$$?; \
	if [ $$load -eq 5 ]; then echo "no load tests collected"; load=0; fi; \
	if [ $$status -eq 0 ]; then status=$$load; fi; \
	exit $$status

run: venv
	mkdir -p var
	$(BIN)/pbx tls self-signed --if-missing --cert $(TLS_CERT) --key $(TLS_KEY)
	$(BIN)/pbx serve --dialplan $(DIALPLAN) --db $(DB) $(foreach address,$(LISTEN),--listen $(address)) \
		--tls-cert $(TLS_CERT) --tls-key $(TLS_KEY) $(if $(HTTP),--http $(HTTP))

# Kamailio and two nodes on one PostgreSQL, for trying the cluster
# (scripts/cluster.sh: EDGE=, NODE_PORTS=, DB=, SCHEMA=, DIALPLAN=).
cluster: venv deps
	PYTHON=$(BIN)/python DIALPLAN=$(DIALPLAN) scripts/cluster.sh

bench: venv deps
	$(BIN)/python bench/register_rate.py --results $(BENCH_RESULTS) $(BENCH_ARGS)

bench-calls: venv deps
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test,bench]'
	$(BIN)/python bench/call_rate.py $(CALL_BENCH_ARGS)

prompts: venv deps
	$(BIN)/python -m pbx.ivr.make_prompts

clean:
	rm -rf .mypy_cache .pytest_cache .hypothesis build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var
