"""``python -m pipelines``: the ``radcascade`` command line."""

import sys

from pipelines.cli.main import main

sys.exit(main())
