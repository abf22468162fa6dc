"""Media: RTP/RTCP, SDP offer/answer, G.711, DTMF in its three forms, tones
and prompts, played at a steady 20 ms pace.

Everything here is pure (no asyncio, sockets or clock reads) except
:mod:`pbx.media.endpoint`, the asyncio edge that owns the UDP sockets and the
one clock tick shared by every stream.
"""
