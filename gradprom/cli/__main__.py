"""`python -m gradprom.cli …`: the same CLI as `gradprom …` and `python -m gradprom …`."""

import sys

from gradprom.cli import main

sys.exit(main())
