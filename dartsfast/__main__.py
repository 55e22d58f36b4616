"""``python -m dartsfast ...``: the same as the ``dartsfast`` command."""
import sys

from dartsfast.cli import main

sys.exit(main())
