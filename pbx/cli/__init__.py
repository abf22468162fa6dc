"""The ``pbx`` command line (click): :mod:`pbx.cli.main` holds the root
group, the other modules one command (or command group) each."""
