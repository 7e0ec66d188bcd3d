"""``python -m mnistlab compare ...``: the ``mnistlab`` command without its console script."""

import sys

from mnistlab.cli import main

sys.exit(main())
