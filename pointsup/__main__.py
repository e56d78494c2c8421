"""``python -m pointsup`` runs the command line."""

import sys

from pointsup.cli import main

sys.exit(main())
