"""``python -m toponas`` (also ``torchrun --nproc_per_node N -m toponas search ...``)."""

from .cli import main

main()
