"""``python -m neurocode ...`` is the ``neurocode`` command."""

import sys

from neurocode.cli import main

if __name__ == "__main__":
    sys.exit(main())
