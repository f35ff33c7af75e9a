"""`python -m gradprom …`: the CLI without its console script (Ray Jobs run it this way on cluster nodes)."""

import sys

from gradprom.cli import main

sys.exit(main())
