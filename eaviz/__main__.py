"""``python -m eaviz``: the command line in :mod:`eaviz.cli`."""

from eaviz.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
