"""``python -m pbx`` runs the command line."""

from pbx.cli.main import main

main()
