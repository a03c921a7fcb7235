"""``python -m ecnas.cli`` is the same as the ``ecnas`` command."""

import sys

from ecnas.cli import main

sys.exit(main())
