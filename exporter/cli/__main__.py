"""``python -m exporter.cli`` is ``rfconv-deploy``."""

import sys

from exporter.cli import main

sys.exit(main())
