"""``python -m pipelines``: the ``radcascade`` command line."""

import sys

from pipelines.cli import main

sys.exit(main())
