"""``python -m ikl_zoo.cli``: the same as the ``ikl-zoo`` command (torchrun launches it this way)."""

from ikl_zoo.cli import main

main()
