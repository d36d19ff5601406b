"""`python -m orchestrator.tools.bench`: the same as `orchestrator bench`.

The functions that spawned worker and baseline processes run live in the package's modules,
not in `__main__`, so the children can import them by name.
"""

import sys

from orchestrator.tools.bench.cli import main

sys.exit(main())
