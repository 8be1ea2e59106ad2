"""`python -m bridge` is the `alertbridge` command."""

import sys

from bridge.cli import main

sys.exit(main())
