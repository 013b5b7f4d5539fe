"""`python -m cosingan ...` is the `cosingan` command."""

import sys

from .cli import main

sys.exit(main())
