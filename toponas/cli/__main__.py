"""``python -m toponas.cli``."""

from . import main

main()
