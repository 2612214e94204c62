"""``python -m reft`` (used by ``accelerate launch -m reft ...``)."""

import sys

from reft.cli import main

sys.exit(main())
