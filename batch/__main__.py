"""``python -m batch`` runs the command line."""

import sys

from batch.cli import main

sys.exit(main())
