"""``python -m mfrec`` runs the CLI."""

import sys

from mfrec.cli import main

sys.exit(main())
