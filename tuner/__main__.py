"""`python -m tuner` is the `tuner` command."""

import sys

from tuner.cli import main

if __name__ == "__main__":  # slot processes (spawn) import this module again as __mp_main__
    sys.exit(main())
