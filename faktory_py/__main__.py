"""`python -m faktory_py` is the same as `faktory-py`."""

import sys

from .cli import main

sys.exit(main())
