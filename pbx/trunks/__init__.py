"""Trunks at run time: registering to providers as a client, placing calls
through their gateways with failover, and recognising requests from them.
The trunk configuration itself is :mod:`pbx.routing.trunk_config`."""
