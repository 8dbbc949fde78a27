"""``python -m ortpipe.cli``: the ``ortpipe`` command."""

import sys

from ortpipe.cli import main

sys.exit(main())
