"""``python -m exporter.cli`` is ``rfconv-deploy``."""

import sys

from exporter.cli import main

if __name__ == "__main__":  # a spawned worker process (serving's decode pool) imports this module
    sys.exit(main())
