"""``python -m tfs_standin``."""

import sys

from tfs_standin.cli import main

sys.exit(main())
