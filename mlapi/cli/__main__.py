"""``python -m mlapi.cli``: the same as the ``mlapi`` command."""

from mlapi.cli.main import main

main()
