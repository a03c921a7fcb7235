"""``python -m ecnas`` is the same as the ``ecnas`` command."""

import sys

from ecnas.cli import main

sys.exit(main())
