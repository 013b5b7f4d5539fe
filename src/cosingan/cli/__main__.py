"""`python -m cosingan.cli ...` is the `cosingan` command."""

import sys

from . import main

sys.exit(main())
