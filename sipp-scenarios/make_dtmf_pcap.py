"""Write a pcap of RFC 4733 key presses for SIPp's ``play_pcap_audio``.

    python sipp-scenarios/make_dtmf_pcap.py 9 sipp-scenarios/dtmf_9.pcap
    python sipp-scenarios/make_dtmf_pcap.py '483948#' sipp-scenarios/dtmf_code.pcap --gap 0.2

Each key is sent as the PBX's own media layer sends one
(:func:`pbx.media.telephone_event.event_packets`: 100 ms, the end packet
three times), payload type 101 (what SIPp's SDP offers), 20 ms apart, a
second between keys. SIPp replays the UDP payloads with the pcap's timing to
the address the answer SDP gave, so the addresses written here are
placeholders. Ethernet, IPv4 and UDP headers are built by hand: the format
is small (libpcap's classic file format, link type 1).
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from pbx.media.rtp import pack_header
from pbx.media.telephone_event import event_packets

PAYLOAD_TYPE = 101
PACKET_SECONDS = 0.020
GAP_SECONDS = 1.0
SSRC = 0x5EED4733
SOURCE, DESTINATION = (bytes([10, 0, 0, 1]), 6000), (bytes([10, 0, 0, 2]), 6000)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(payload: bytes) -> bytes:
    """``payload`` in UDP, IPv4 and Ethernet headers."""
    udp = struct.pack("!HHHH", SOURCE[1], DESTINATION[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, SOURCE[0], DESTINATION[0])
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp


def rtp_packets(keys: str, gap: float = GAP_SECONDS) -> list[tuple[float, bytes]]:
    """(seconds from the start, RTP packet) for each key in turn, ``gap``
    seconds between keys."""
    out: list[tuple[float, bytes]] = []
    sequence, timestamp, at = 1, 160, 0.0
    for key in keys:
        for marker, offset, payload in event_packets(key):
            out.append((at, pack_header(PAYLOAD_TYPE, sequence, timestamp + offset, SSRC, marker) + payload))
            sequence += 1
            at += PACKET_SECONDS
        at += gap
        timestamp += int(gap * 8000) + 8 * 160
    return out


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for at, packet in packets:
            data = frame(packet)
            seconds = int(at)
            out.write(struct.pack("<IIII", 1_700_000_000 + seconds, int(round((at - seconds) * 1e6)),
                                  len(data), len(data)))
            out.write(data)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("keys", help="the keys to press, e.g. 9 or 1#")
    parser.add_argument("output", type=Path)
    parser.add_argument("--gap", type=float, default=GAP_SECONDS, help="seconds between keys (default 1)")
    args = parser.parse_args(argv)
    write_pcap(args.output, rtp_packets(args.keys, args.gap))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
