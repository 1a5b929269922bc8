"""``python -m codeexec``: the ``codeexec`` command."""

import sys

from ._cli import main

sys.exit(main())
