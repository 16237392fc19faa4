"""``python -m aura_core`` runs the ``aura-core`` command line."""

import sys

from .cli import main

sys.exit(main())
