"""One pjsua2 softphone, driven over stdin/stdout with JSON lines.

pjsua2 allows a single Endpoint per process, so every end-to-end phone runs
this script in its own subprocess (see ``phone.py`` for the pytest side).

Protocol: each stdin line is a JSON object with a ``cmd`` key; each stdout
line is a JSON object with an ``event`` key.  Every accepted command is
acknowledged with ``ok {cmd, ...}``; a refused or failed one produces
``error {cmd, message}`` instead, the process keeps running.  The process
exits when it reads ``quit`` or when stdin reaches end of file (the parent
died), so it can never outlive the test run.

Threading: ``uaConfig.threadCnt = 0``, so SIP processing and every pjsua2
callback run on the main thread inside ``libHandleEvents``; stdin is polled
with ``select`` between those calls.  The original stdout descriptor is kept
for events only and descriptor 1 is pointed at stderr, so nothing printed by
the C library can corrupt the event stream.  Passwords are never written to
events or logs by this script.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO

import pjsua2 as pj

Command = dict[str, Any]

# pjsip_inv_state values, named as the events report them (RFC 3261 §13
# stages of an INVITE session as pjsip models them).
_CALL_STATES: dict[int, str] = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}

_MEDIA_STATUS: dict[int, str] = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}

# pjmedia_dir of the audio stream, in SDP direction words (RFC 3264 §5.1).
_MEDIA_DIRECTION: dict[int, str] = {
    pj.PJMEDIA_DIR_NONE: "inactive",
    pj.PJMEDIA_DIR_ENCODING: "sendonly",
    pj.PJMEDIA_DIR_DECODING: "recvonly",
    pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv",
}

_TRANSPORTS = ("udp", "tcp", "tls")
# AccountConfig.mediaConfig.srtpUse by name (pjmedia_srtp_use).
_SRTP_USE = {"disabled": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
             "mandatory": pj.PJMEDIA_SRTP_MANDATORY}
DEFAULT_CODECS = ("PCMU/8000", "PCMA/8000")


class CommandError(Exception):
    """A command the phone refuses; reported as an ``error`` event."""


class StdoutGone(Exception):
    """The parent no longer reads our events."""


class EventSink:
    """Writes one JSON object per line to the private event stream.

    While a command runs, events its callbacks raise are held back and
    written after the command's ``ok`` or ``error``: a client that waits for
    the acknowledgement first never skips past the consequences.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._held: list[str] | None = None

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self._write(line)

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        if self._held is not None:
            self._held.append(line)
        else:
            self._write(line)

    def ack(self, event: str, **fields: Any) -> None:
        """Write at once, ahead of any held events."""
        self._write(json.dumps({"event": event, **fields}, default=str))

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise StdoutGone from exc


# --- argument checking ------------------------------------------------------

_MISSING: Any = object()


def _get(args: Command, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    if key not in args or args[key] is None:
        if default is _MISSING:
            raise CommandError(f"missing field {key!r}")
        return default
    value = args[key]
    # bool is an int subclass; never accept it where a number is wanted.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise CommandError(f"field {key!r} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise CommandError(f"field {key!r} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _str(args: Command, key: str, default: Any = _MISSING) -> Any:
    return _get(args, key, str, default)


def _int(args: Command, key: str, default: Any = _MISSING) -> Any:
    return _get(args, key, int, default)


def _num(args: Command, key: str, default: Any = _MISSING) -> Any:
    value = _get(args, key, (int, float), default)
    return None if value is None else float(value)


def _status_code(args: Command, key: str, default: Any, *, low: int, high: int) -> Any:
    code = _int(args, key, default)
    if code is not None and not low <= code <= high:
        raise CommandError(f"field {key!r} must be a status code in {low}..{high}, got {code}")
    return code


def _transport(args: Command, default: Any = "udp") -> Any:
    value = _str(args, "transport", default)
    if value is not None and value not in _TRANSPORTS:
        raise CommandError(f"transport must be one of {_TRANSPORTS}, got {value!r}")
    return value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, pj.Error):
        return f"{exc.title}: {exc.reason} (status {exc.status})"
    return f"{type(exc).__name__}: {exc}"


# RFC 3261 §7.3.3 compact forms of the headers incoming_call reports.
_COMPACT = {"f": "from", "t": "to", "v": "via"}


def _parse_request(message: str) -> tuple[str, dict[str, str]]:
    """Request-URI and the first From / To / Via header values of a raw request."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    parts = lines[0].split(" ")
    request_uri = parts[1] if len(parts) == 3 else ""
    found: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key in ("from", "to", "via") and key not in found:
            found[key] = value.strip()
    return request_uri, found


# --- pjsua2 subclasses: callbacks go straight to the Phone ------------------


class PhoneAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self._phone = phone

    def onRegState(self, prm: Any) -> None:  # noqa: N802 (pjsua2 name)
        self._phone.guard("reg_state", lambda: self._phone.on_reg_state(self, prm))

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self._phone.guard("incoming_call", lambda: self._phone.on_incoming_call(self, prm))

    def onMwiInfo(self, prm: Any) -> None:  # noqa: N802
        # A message-summary NOTIFY (RFC 3842), subscribed or unsolicited:
        # the whole message, for the test to read Messages-Waiting from.
        self._phone.guard("mwi", lambda: self._phone.sink.emit("mwi", message=str(prm.rdata.wholeMsg)))

    def onInstantMessage(self, prm: Any) -> None:  # noqa: N802
        self._phone.guard("im", lambda: self._phone.sink.emit(
            "im", **{"from": str(prm.fromUri)}, to=str(prm.toUri), body=str(prm.msgBody),
            content_type=str(prm.contentType)))


class PhoneBuddy(pj.Buddy):  # type: ignore[misc]
    """A presence subscription (RFC 3856) or a chat peer (RFC 3428)."""

    def __init__(self, phone: Phone, uri: str) -> None:
        super().__init__()
        self._phone = phone
        self.uri = uri

    def onBuddyState(self) -> None:  # noqa: N802
        def report() -> None:
            info = self.getInfo()
            status = {pj.PJSUA_BUDDY_STATUS_ONLINE: "online", pj.PJSUA_BUDDY_STATUS_OFFLINE: "offline"}.get(
                int(info.presStatus.status), "unknown")
            activity = {pj.PJRPID_ACTIVITY_BUSY: "busy", pj.PJRPID_ACTIVITY_AWAY: "away"}.get(
                int(info.presStatus.activity), "none")
            self._phone.sink.emit("buddy_state", uri=self.uri, status=status, activity=activity,
                                  text=str(info.presStatus.statusText), note=str(info.presStatus.note),
                                  sub_state=str(info.subStateName))
        self._phone.guard("buddy_state", report)


class PhoneCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Phone, account: PhoneAccount, serial: int,
                 call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self._phone = phone
        self.serial = serial
        self.players: list[PhonePlayer] = []
        self.recorders: list[tuple[Any, str]] = []
        self.reported_tsx: set[str] = set()

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        self._phone.guard("call_state", lambda: self._phone.on_call_state(self))

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        self._phone.guard("media_state", lambda: self._phone.on_media_state(self))

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        method = "info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc4733"
        self._phone.guard("dtmf", lambda: self._phone.sink.emit(
            "dtmf", call=self.serial, digit=str(prm.digit), method=method))

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802
        self._phone.guard("tsx", lambda: self._phone.on_tsx_state(self, prm))

    def onCallTransferStatus(self, prm: Any) -> None:  # noqa: N802
        self._phone.guard("xfer_status", lambda: self._phone.sink.emit(
            "xfer_status", call=self.serial, code=int(prm.statusCode), reason=str(prm.reason),
            final=bool(prm.finalNotify)))


class PhonePlayer(pj.AudioMediaPlayer):  # type: ignore[misc]
    def __init__(self, call: int, wav: str) -> None:
        super().__init__()
        self.call = call
        self.wav = wav
        self.finished = False

    def onEof2(self) -> None:  # noqa: N802
        # Called from the media clock thread; only set a flag here, the main
        # loop reports it (and may destroy the player, which is not allowed
        # inside this callback).
        self.finished = True


@dataclass
class PendingAnswer:
    serial: int
    code: int
    due: float


@dataclass
class ClosingRecording:
    call: int
    wav: str
    deadline: float


def _wav_complete(path: str) -> bool:
    """True once the RIFF size field covers the whole file (header written)."""
    try:
        with open(path, "rb") as wav:
            head = wav.read(8)
            size = os.fstat(wav.fileno()).st_size
    except OSError:
        return False
    return (len(head) == 8 and head[:4] == b"RIFF"
            and int.from_bytes(head[4:], "little") + 8 == size)


@dataclass
class AccountOptions:
    auto_answer: int | None = None
    auto_answer_delay: float = 0.0
    ring: bool = True


@dataclass
class Phone:
    name: str
    sink: EventSink
    log_file: str
    log_level: int
    codecs: tuple[str, ...]
    tls_ca: str = ""
    endpoint: Any = None
    transport_ids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    account: PhoneAccount | None = None
    local_account: PhoneAccount | None = None
    options: AccountOptions = field(default_factory=AccountOptions)
    calls: dict[int, PhoneCall] = field(default_factory=dict)
    finished_calls: list[PhoneCall] = field(default_factory=list)
    buddies: dict[str, PhoneBuddy] = field(default_factory=dict)
    pending_answers: list[PendingAnswer] = field(default_factory=list)
    closing_recordings: list[ClosingRecording] = field(default_factory=list)
    next_serial: int = 1
    running: bool = True
    unregister_on_quit: bool = False
    reg_state_count: int = 0

    # --- set-up and tear-down ----------------------------------------------

    def start(self) -> None:
        ep = pj.Endpoint()
        ep.libCreate()
        self.endpoint = ep
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = False
        config.uaConfig.maxCalls = 8
        config.uaConfig.userAgent = f"pbx-e2e-phone/{self.name}"
        config.logConfig.level = self.log_level
        config.logConfig.consoleLevel = 0
        config.logConfig.filename = self.log_file
        config.logConfig.msgLogging = 1 if self.log_level >= 3 else 0
        config.medConfig.noVad = True          # keep sending RTP in silence
        config.medConfig.ecTailLen = 0         # no echo canceller on null audio
        config.medConfig.clockRate = 8000
        config.medConfig.sndClockRate = 8000
        # The null sound device is the media clock: every stream sends (RTP,
        # RFC 4733 keys) only on its ticks. pjsua closes an idle device after
        # a second by default, and a call connected to no player or recorder
        # then went silent part-way through its keys. A phone's clock runs.
        config.medConfig.sndAutoCloseTime = -1
        ep.libInit(config)
        for kind, type_id in (("udp", pj.PJSIP_TRANSPORT_UDP), ("tcp", pj.PJSIP_TRANSPORT_TCP),
                              ("tls", pj.PJSIP_TRANSPORT_TLS)):
            transport_config = pj.TransportConfig()
            transport_config.port = 0
            transport_config.boundAddress = "127.0.0.1"
            transport_config.publicAddress = "127.0.0.1"
            if kind == "tls":
                # The test PBX's certificate comes from a test CA: trust it
                # when given (--tls-ca), and check the name then.
                transport_config.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
                if self.tls_ca:
                    transport_config.tlsConfig.CaListFile = self.tls_ca
                    transport_config.tlsConfig.verifyServer = True
            self.transport_ids[kind] = ep.transportCreate(type_id, transport_config)
            local = ep.transportGetInfo(self.transport_ids[kind]).localName
            self.ports[kind] = int(str(local).rsplit(":", 1)[1])
        ep.libStart()
        ep.audDevManager().setNullDev()
        self._set_codecs()
        self._create_local_account()
        self.sink.emit("ready", name=self.name, pid=os.getpid(),
                       udp_port=self.ports["udp"], tcp_port=self.ports["tcp"], tls_port=self.ports["tls"],
                       codecs=list(self.codecs))

    def _set_codecs(self) -> None:
        wanted = {c.lower() for c in self.codecs}
        found: set[str] = set()
        for info in self.endpoint.codecEnum2():
            codec_id = str(info.codecId)
            # codecId looks like "PCMU/8000/1"; match on name/rate.
            short = "/".join(codec_id.split("/")[:2]).lower()
            keep = short in wanted or codec_id.lower() in wanted
            if keep:
                found.add(short)
            self.endpoint.codecSetPriority(codec_id, 200 if keep else 0)
        missing = wanted - found - {c.lower() for c in self.codecs if c.count("/") > 1}
        if missing:
            raise CommandError(f"codecs not available: {sorted(missing)}")

    def shutdown(self, *, unregister: bool) -> None:
        if self.endpoint is None:
            return
        ep = self.endpoint
        if self.calls:
            try:
                ep.hangupAllCalls()
            except pj.Error:
                pass
            self._pump_until(lambda: not self.calls, 2.0)
        if unregister and self.account is not None and self.account.isValid():
            info = self.account.getInfo()
            if info.regIsActive:
                # Wait for the final answer, not just the local state: the
                # registrar may challenge the un-REGISTER first.
                seen = self.reg_state_count
                self.account.setRegistration(False)
                self._pump_until(lambda: self.reg_state_count > seen, 2.0)
        self._collect()
        # Registration and calls are already dealt with above; skip the
        # library's own network clean-up (and its fixed one second sleep).
        ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        self.endpoint = None

    def account_active(self) -> bool:
        return bool(self.account is not None and self.account.getInfo().regIsActive)

    def _pump_until(self, done: Callable[[], bool], limit: float) -> None:
        deadline = time.monotonic() + limit
        while not done() and time.monotonic() < deadline:
            self.endpoint.libHandleEvents(10)
            self._collect()

    # --- main loop ------------------------------------------------------------

    def run(self, stdin_fd: int) -> None:
        buffer = b""
        parent = os.getppid()
        while self.running:
            self.endpoint.libHandleEvents(10)
            self._collect()
            self._fire_due_answers()
            if os.getppid() != parent:
                return  # orphaned even though stdin is still open somewhere
            readable, _, _ = select.select([stdin_fd], [], [], 0)
            if not readable:
                continue
            chunk = os.read(stdin_fd, 65536)
            if not chunk:
                return  # parent closed stdin: it has gone away
            buffer += chunk
            while b"\n" in buffer and self.running:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    self.handle_line(line)

    def handle_line(self, line: bytes) -> None:
        try:
            command = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.sink.emit("error", cmd=None, message=f"not JSON: {exc}")
            return
        if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
            self.sink.emit("error", cmd=None, message="a command is a JSON object with a string 'cmd'")
            return
        name = command["cmd"]
        handler = self._handlers().get(name)
        if handler is None:
            self.sink.emit("error", cmd=name, message=f"unknown command {name!r}")
            return
        self.sink.hold()
        try:
            extra = handler(command)
        except StdoutGone:
            raise
        except Exception as exc:  # pjsua2 errors and our own refusals alike
            self.sink.ack("error", cmd=name, message=_describe(exc))
        else:
            self.sink.ack("ok", cmd=name, **(extra or {}))
        finally:
            self.sink.release()

    def guard(self, what: str, callback: Callable[[], None]) -> None:
        """Run a pjsua2 callback body; an exception must not cross into C++."""
        try:
            callback()
        except StdoutGone:
            self.running = False
        except Exception as exc:
            try:
                self.sink.emit("error", cmd=None, message=f"in {what} callback: {_describe(exc)}")
            except StdoutGone:
                self.running = False

    def _collect(self) -> None:
        """Release objects that must not be destroyed inside callbacks."""
        for call in self.calls.values():
            self._report_finished_players(call)
        while self.finished_calls:
            call = self.finished_calls.pop()
            self._report_finished_players(call)
            self._stop_recorders(call)
            call.players.clear()
        self._report_closed_recordings()

    def _report_closed_recordings(self) -> None:
        now = time.monotonic()
        for closing in list(self.closing_recordings):
            complete = _wav_complete(closing.wav)
            if complete or now >= closing.deadline:
                self.closing_recordings.remove(closing)
                self.sink.emit("record_done", call=closing.call, wav=closing.wav,
                               complete=complete)

    def _report_finished_players(self, call: PhoneCall) -> None:
        for player in [p for p in call.players if p.finished]:
            call.players.remove(player)
            self.sink.emit("play_done", call=call.serial, wav=player.wav)

    def _stop_recorders(self, call: PhoneCall) -> list[str]:
        # Dropping the recorder destroys it, which flushes the file and writes
        # the final WAV header; pjmedia's conference bridge does that later on
        # its clock thread, so record_done waits until the file is complete.
        done = [path for _, path in call.recorders]
        call.recorders.clear()
        deadline = time.monotonic() + 2.0
        self.closing_recordings.extend(ClosingRecording(call.serial, path, deadline)
                                       for path in done)
        return done

    def _fire_due_answers(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending_answers if p.due <= now]:
            self.pending_answers.remove(pending)
            call = self.calls.get(pending.serial)
            if call is None:
                continue
            try:
                self._answer(call, pending.code)
            except Exception as exc:
                self.sink.emit("error", cmd="auto_answer", message=_describe(exc))

    # --- callbacks -------------------------------------------------------------

    def on_reg_state(self, account: PhoneAccount, prm: Any) -> None:
        info = account.getInfo()
        self.reg_state_count += 1
        self.sink.emit("reg_state", code=int(prm.code), reason=str(prm.reason),
                       expires=int(prm.expiration), active=bool(info.regIsActive),
                       status=int(prm.status))

    def on_incoming_call(self, account: PhoneAccount, prm: Any) -> None:
        call = PhoneCall(self, account, self._new_serial(), prm.callId)
        self.calls[call.serial] = call
        info = call.getInfo()
        request_uri, headers = _parse_request(str(prm.rdata.wholeMsg))
        self.sink.emit("incoming_call", call=call.serial, sip_call_id=str(info.callIdString),
                       request_uri=request_uri, via=headers.get("via", ""),
                       body=str(prm.rdata.wholeMsg).replace("\r\n", "\n").partition("\n\n")[2],
                       **{"from": headers.get("from", str(info.remoteUri)),
                          "to": headers.get("to", str(info.localUri))})
        if self.options.ring:
            self._answer(call, 180)
        if self.options.auto_answer is not None:
            self.pending_answers.append(PendingAnswer(
                call.serial, self.options.auto_answer,
                time.monotonic() + self.options.auto_answer_delay))

    def on_call_state(self, call: PhoneCall) -> None:
        info = call.getInfo()
        state = _CALL_STATES.get(int(info.state), str(info.stateText))
        self.sink.emit("call_state", call=call.serial, state=state,
                       code=int(info.lastStatusCode), reason=str(info.lastReason),
                       role="uac" if info.role == pj.PJSIP_ROLE_UAC else "uas",
                       sip_call_id=str(info.callIdString))
        if state == "DISCONNECTED":
            self.calls.pop(call.serial, None)
            self.pending_answers = [p for p in self.pending_answers if p.serial != call.serial]
            self.finished_calls.append(call)

    def on_media_state(self, call: PhoneCall) -> None:
        info = call.getInfo()
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = _MEDIA_STATUS.get(int(media.status), str(media.status))
            proto = ""
            if status == "active":
                try:
                    proto = "RTP/SAVP" if int(call.getStreamInfo(media.index).proto) & pj.PJMEDIA_TP_PROFILE_SRTP \
                        else "RTP/AVP"
                except pj.Error:
                    proto = ""
            self.sink.emit("media_state", call=call.serial, status=status,
                           dir=_MEDIA_DIRECTION.get(int(media.dir), str(media.dir)), proto=proto)
            if status == "active":
                self._connect_media(call)

    def on_tsx_state(self, call: PhoneCall, prm: Any) -> None:
        """Report each in-dialog non-INVITE transaction once it has its final
        response (sent or received): ``tsx {method, role, code}``."""
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = event.body.tsxState.tsx
        method = str(tsx.method)
        if method in ("INVITE", "ACK", "BYE", "CANCEL") or tsx.statusCode < 200:
            return
        # UDP passes Completed, TCP goes straight to Terminated: report
        # whichever comes first for this transaction.
        if tsx.state not in (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED):
            return
        key = str(tsx.pjTransaction)
        if key in call.reported_tsx:
            return
        call.reported_tsx.add(key)
        self.sink.emit("tsx", call=call.serial, method=method, code=int(tsx.statusCode),
                       role="uac" if tsx.role == pj.PJSIP_ROLE_UAC else "uas")

    def _connect_media(self, call: PhoneCall) -> None:
        audio = call.getAudioMedia(-1)
        for player in call.players:
            player.startTransmit(audio)
        for recorder, _ in call.recorders:
            audio.startTransmit(recorder)

    # --- commands --------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Command], dict[str, Any] | None]]:
        return {
            "register": self.cmd_register,
            "reregister": self.cmd_reregister,
            "unregister": self.cmd_unregister,
            "set": self.cmd_set,
            "call": self.cmd_call,
            "answer": self.cmd_answer,
            "hangup": self.cmd_hangup,
            "hold": self.cmd_hold,
            "unhold": self.cmd_unhold,
            "play": self.cmd_play,
            "stop_play": self.cmd_stop_play,
            "record": self.cmd_record,
            "stop_record": self.cmd_stop_record,
            "send_dtmf": self.cmd_send_dtmf,
            "update": self.cmd_update,
            "xfer": self.cmd_xfer,
            "xfer_replaces": self.cmd_xfer_replaces,
            "subscribe": self.cmd_subscribe,
            "message": self.cmd_message,
            "status": self.cmd_status,
            "quit": self.cmd_quit,
        }

    def _apply_options(self, args: Command) -> None:
        # A present auto_answer wins even when null (that turns it off).
        auto = (_status_code(args, "auto_answer", None, low=200, high=699)
                if "auto_answer" in args else self.options.auto_answer)
        delay = _num(args, "auto_answer_delay", self.options.auto_answer_delay)
        ring = _get(args, "ring", bool, self.options.ring)
        if delay < 0:
            raise CommandError("auto_answer_delay must not be negative")
        self.options = AccountOptions(auto_answer=auto, auto_answer_delay=delay, ring=ring)

    def cmd_register(self, args: Command) -> dict[str, Any]:
        user = _str(args, "user")
        password = _str(args, "password", "")
        domain = _str(args, "domain")
        registrar = _str(args, "registrar")
        transport = _transport(args)
        expires = _int(args, "expires", 300)
        realm = _str(args, "realm", "*")
        if expires <= 0:
            raise CommandError("expires must be positive; use unregister to remove the binding")
        self._apply_options(args)
        config = pj.AccountConfig()
        config.idUri = f"sip:{user}@{domain}"
        config.regConfig.registrarUri = f"sip:{registrar};transport={transport}"
        config.regConfig.timeoutSec = expires
        config.regConfig.retryIntervalSec = 0        # tests want one attempt
        config.regConfig.firstRetryIntervalSec = 0
        config.regConfig.dropCallsOnFail = False
        config.regConfig.unregWaitMsec = 1000
        config.sipConfig.transportId = self.transport_ids[transport]
        config.sipConfig.authCreds.append(pj.AuthCredInfo("digest", realm, user, 0, password))
        if _get(args, "outbound_proxy", bool, False):
            # Requests to the domain's URIs (a buddy's SUBSCRIBE, which pjsua
            # sends from the account matching its URI) go to the PBX: the
            # test domain has no DNS.
            config.sipConfig.proxies.append(f"sip:{registrar};transport={transport};lr")
        self._plain_nat_config(config)
        # Subscribe to one's own message-summary (the voicemail lamp).
        config.mwiConfig.enabled = _get(args, "mwi", bool, False)
        srtp = _str(args, "srtp", "disabled")
        if srtp not in _SRTP_USE:
            raise CommandError(f"srtp must be one of {sorted(_SRTP_USE)}, got {srtp!r}")
        config.mediaConfig.srtpUse = _SRTP_USE[srtp]
        # 0: SRTP over any signalling transport (the PBX decides what it
        # accepts; the tests check that).
        config.mediaConfig.srtpSecureSignaling = _int(args, "srtp_secure_signaling", 0)
        if self.account is not None and self.account.isValid():
            self.account.modify(config)
        else:
            account = PhoneAccount(self)
            account.create(config)
            self.account = account
        return {"aor": config.idUri}

    @staticmethod
    def _plain_nat_config(config: Any) -> None:
        # Everything is on 127.0.0.1: keep the Contact and Via exactly as bound,
        # and no RFC 5626 outbound parameters, so the registrar sees plain data.
        nat = config.natConfig
        nat.sipOutboundUse = 0
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.iceEnabled = False
        nat.turnEnabled = False
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        config.mediaConfig.transportConfig.publicAddress = "127.0.0.1"

    def _require_account(self) -> PhoneAccount:
        if self.account is None or not self.account.isValid():
            raise CommandError("not registered: send register first")
        return self.account

    def cmd_reregister(self, args: Command) -> None:
        self._require_account().setRegistration(True)

    def cmd_unregister(self, args: Command) -> None:
        self._require_account().setRegistration(False)

    def cmd_set(self, args: Command) -> None:
        self._apply_options(args)

    def _create_local_account(self) -> None:
        """The account that takes calls and places them without a registrar.

        pjsua refuses incoming requests when no account exists; this one
        matches requests addressed straight to the phone's transports.
        """
        config = pj.AccountConfig()
        config.idUri = f"sip:{self.name}@127.0.0.1"
        self._plain_nat_config(config)
        account = PhoneAccount(self)
        account.create(config, True)     # the default account
        self.local_account = account

    def cmd_call(self, args: Command) -> dict[str, Any]:
        uri = _str(args, "uri")
        transport = _transport(args, None)
        if not uri.startswith(("sip:", "sips:")):
            raise CommandError(f"uri must be a SIP URI, got {uri!r}")
        if transport is not None and ";transport=" not in uri.lower():
            uri = f"{uri};transport={transport}"
        account = self.account
        if account is None or not account.isValid():
            account = self.local_account
        if account is None:
            raise CommandError("phone is not started")
        call = PhoneCall(self, account, self._new_serial())
        param = pj.CallOpParam(True)
        param.opt.audioCount = 1
        param.opt.videoCount = 0
        # Registered before makeCall: CALLING is reported from inside it.
        self.calls[call.serial] = call
        try:
            call.makeCall(uri, param)
        except Exception:
            self.calls.pop(call.serial, None)
            raise
        return {"call": call.serial, "uri": uri}

    def _new_serial(self) -> int:
        serial = self.next_serial
        self.next_serial += 1
        return serial

    def _find_call(self, args: Command) -> PhoneCall:
        serial = _int(args, "call", None)
        if serial is not None:
            found = self.calls.get(serial)
            if found is None:
                raise CommandError(f"no active call {serial}")
            return found
        if not self.calls:
            raise CommandError("no active call")
        if len(self.calls) > 1:
            raise CommandError(f"several calls active {sorted(self.calls)}: give 'call'")
        return next(iter(self.calls.values()))

    def _answer(self, call: PhoneCall, code: int) -> None:
        param = pj.CallOpParam(True)
        param.statusCode = code
        if code >= 300:
            call.hangup(param)
        else:
            call.answer(param)

    def cmd_answer(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        code = _status_code(args, "code", 200, low=180, high=699)
        self.pending_answers = [p for p in self.pending_answers if p.serial != call.serial]
        self._answer(call, code)
        return {"call": call.serial, "code": code}

    def cmd_hangup(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        param = pj.CallOpParam(True)
        code = _status_code(args, "code", None, low=300, high=699)
        if code is not None:
            param.statusCode = code     # only used while the call is unanswered
        call.hangup(param)
        return {"call": call.serial}

    def cmd_hold(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        call.setHold(pj.CallOpParam(True))      # re-INVITE with a=sendonly
        return {"call": call.serial}

    def cmd_unhold(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        param = pj.CallOpParam(True)
        param.opt.flag = pj.PJSUA_CALL_UNHOLD   # re-INVITE with a=sendrecv
        call.reinvite(param)
        return {"call": call.serial}

    def _active_audio(self, call: PhoneCall) -> Any:
        # Keep the CallInfo alive while iterating: SWIG's vector refers into it.
        info = call.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in (
                    pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
                    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD):
                return call.getAudioMedia(-1)
        raise CommandError(f"call {call.serial} has no audio media yet")

    def cmd_play(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        wav = _str(args, "wav")
        loop = _get(args, "loop", bool, False)
        if not os.path.isfile(wav):
            raise CommandError(f"no such WAV file: {wav}")
        audio = self._active_audio(call)
        player = PhonePlayer(call.serial, wav)
        player.createPlayer(wav, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(audio)
        call.players.append(player)
        return {"call": call.serial, "wav": wav}

    def cmd_stop_play(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        stopped = [p.wav for p in call.players]
        call.players.clear()
        return {"call": call.serial, "stopped": stopped}

    def cmd_record(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        wav = _str(args, "wav")
        if not wav.lower().endswith(".wav"):
            raise CommandError("record needs a path ending in .wav")
        audio = self._active_audio(call)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(wav)
        audio.startTransmit(recorder)
        call.recorders.append((recorder, wav))
        return {"call": call.serial, "wav": wav}

    def cmd_stop_record(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        return {"call": call.serial, "stopped": self._stop_recorders(call)}

    def cmd_send_dtmf(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        digits = _str(args, "digits")
        if not digits or any(d not in "0123456789*#ABCDabcd" for d in digits):
            raise CommandError(f"digits must be 0-9, *, #, A-D; got {digits!r}")
        method = _str(args, "method", "rfc4733")
        if method == "info":
            param = pj.CallSendDtmfParam()
            param.digits = digits
            param.method = pj.PJSUA_DTMF_METHOD_SIP_INFO   # RFC 6086 INFO, dtmf-relay body
            call.sendDtmf(param)
        elif method == "rfc4733":
            call.dialDtmf(digits)   # RFC 4733 telephone-event
        else:
            raise CommandError(f"method must be rfc4733 or info, got {method!r}")
        return {"call": call.serial, "digits": digits, "method": method}

    def cmd_update(self, args: Command) -> dict[str, Any]:
        call = self._find_call(args)
        call.update(pj.CallOpParam(True))   # RFC 3311 UPDATE with a new offer
        return {"call": call.serial}

    def cmd_xfer(self, args: Command) -> dict[str, Any]:
        """Blind transfer: REFER with Refer-To ``uri`` (RFC 3515)."""
        call = self._find_call(args)
        call.xfer(_str(args, "uri"), pj.CallOpParam(True))
        return {"call": call.serial}

    def cmd_xfer_replaces(self, args: Command) -> dict[str, Any]:
        """Attended transfer: REFER in ``call`` naming call ``to``'s dialog (RFC 3891)."""
        call = self._find_call(args)
        other = self.calls.get(_int(args, "to"))
        if other is None:
            raise CommandError("no such call to replace")
        call.xferReplaces(other, pj.CallOpParam(True))
        return {"call": call.serial}

    def _buddy(self, uri: str, subscribe: bool) -> PhoneBuddy:
        found = self.buddies.get(uri)
        if found is not None:
            return found
        config = pj.BuddyConfig()
        config.uri = uri
        config.subscribe = subscribe
        buddy = PhoneBuddy(self, uri)
        buddy.create(self._require_account(), config)
        self.buddies[uri] = buddy
        return buddy

    def cmd_subscribe(self, args: Command) -> dict[str, Any]:
        """Watch ``uri``'s presence (SUBSCRIBE, Event: presence)."""
        uri = _str(args, "uri")
        buddy = self._buddy(uri, True)
        buddy.subscribePresence(True)
        return {"uri": uri}

    def cmd_message(self, args: Command) -> dict[str, Any]:
        """Send ``body`` to ``uri`` in a MESSAGE (RFC 3428)."""
        uri = _str(args, "uri")
        param = pj.SendInstantMessageParam()
        param.content = _str(args, "body")
        param.contentType = "text/plain"
        self._buddy(uri, False).sendInstantMessage(param)
        return {"uri": uri}

    def cmd_status(self, args: Command) -> dict[str, Any]:
        registered = self.account_active()
        return {"calls": sorted(self.calls), "registered": registered,
                "udp_port": self.ports["udp"], "tcp_port": self.ports["tcp"]}

    def cmd_quit(self, args: Command) -> None:
        self.unregister_on_quit = _get(args, "unregister", bool, False)
        self.running = False


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", default="phone")
    parser.add_argument("--log-file", default="", help="pjsua log file (default: none)")
    parser.add_argument("--log-level", type=int, default=3, choices=range(0, 6))
    parser.add_argument("--codecs", default=",".join(DEFAULT_CODECS),
                        help="comma separated, e.g. PCMU/8000,PCMA/8000")
    parser.add_argument("--tls-ca", default="", help="CA file the PBX's TLS certificate is checked against")
    return parser.parse_args(argv)


def main(argv: list[str]) -> NoReturn:
    args = _parse_args(argv)
    # Keep the real stdout for events only; descriptor 1 now goes to stderr so
    # stray output from the C library cannot break the JSON stream.
    event_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sink = EventSink(os.fdopen(event_fd, "w", encoding="utf-8", buffering=1))
    codecs = tuple(c.strip() for c in args.codecs.split(",") if c.strip())
    phone = Phone(name=args.name, sink=sink, log_file=args.log_file,
                  log_level=args.log_level, codecs=codecs, tls_ca=args.tls_ca)
    try:
        phone.start()
        phone.run(sys.stdin.fileno())
    except StdoutGone:
        pass
    except Exception as exc:
        try:
            sink.emit("error", cmd=None, message=f"fatal: {_describe(exc)}")
        except StdoutGone:
            pass
        _finish(phone, 1)
    _finish(phone, 0)


def _finish(phone: Phone, status: int) -> NoReturn:
    try:
        phone.shutdown(unregister=phone.unregister_on_quit)
        phone.sink.emit("bye")
    except (Exception, StdoutGone):
        pass
    sys.stderr.flush()
    # Skip interpreter teardown: pjsua2's SWIG objects must not be finalised
    # after the library is gone.
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
