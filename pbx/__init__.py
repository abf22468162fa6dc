"""An asyncio SIP softswitch / PBX core."""

__version__ = "0.1.0"
