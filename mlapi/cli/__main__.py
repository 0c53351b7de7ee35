"""``python -m mlapi.cli``: the same as the ``mlapi`` command."""

from mlapi.cli.main import main

if __name__ == "__main__":  # not when a tool imports every module (tests/test_install_requires.py)
    main()
