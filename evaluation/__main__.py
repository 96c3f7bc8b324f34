"""``python -m secsplit.evaluation`` runs the secsplit CLI."""

import sys

from secsplit.evaluation.cli import main

sys.exit(main())
