"""Serve authsite, or manage its users: `python run.py --help`."""

import sys

from authsite.cli import main

if __name__ == "__main__":
    sys.exit(main())
