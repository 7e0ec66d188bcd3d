"""``python -m mnistlab compare ...``: the ``mnistlab`` command without its console script."""

import sys

from mnistlab.app.commands import main

sys.exit(main())
