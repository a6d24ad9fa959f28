"""``python -m patchwidget``: the command line (see ``patchwidget.cli``)."""

import sys

from .cli import main

sys.exit(main())
