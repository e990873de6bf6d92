"""``python -m headlined`` is the ``headlined`` command."""

import sys

from headlined.cli import main

sys.exit(main())
