"""``python -m node`` is the same program as the ``cms-node`` console script."""

from node.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
