"""`python -m authsite [command]`: the same as `python run.py [command]`."""

import sys

from authsite.cli import main

sys.exit(main())
