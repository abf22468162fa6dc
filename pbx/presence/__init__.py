"""Presence and busy lamps (SUBSCRIBE/NOTIFY) and chat (MESSAGE): the pure
rules; the glue is in :mod:`pbx.server.presence` and :mod:`pbx.server.chat`."""
