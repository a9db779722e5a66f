"""``python -m mvit``: see `mvit.cli`."""

import sys

from .cli import main

sys.exit(main())
