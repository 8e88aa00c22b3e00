"""`python -m authsite [command]`: the same as `python run.py [command]`."""

import sys

from authsite.cli import main

if __name__ == "__main__":
    sys.exit(main())
