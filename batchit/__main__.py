"""`python -m batchit` is the same program as the `batchit` command."""

import sys

from batchit.cli import main

sys.exit(main())
