"""``python -m reft.cli``."""

import os
import sys

from reft.cli import main

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.exit(main())
