"""``python -m pbx`` runs the command line."""

from pbx.cli import main

main()
