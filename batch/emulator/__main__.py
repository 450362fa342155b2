"""``python -m batch.emulator``: the emulator's command line."""

import sys

from batch.emulator.cli import main

sys.exit(main())
