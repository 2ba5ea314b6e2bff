"""`python -m localai.cli`: the same as the `localai` command."""

import sys

from localai.cli import main

sys.exit(main())
