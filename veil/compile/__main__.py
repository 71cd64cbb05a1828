"""`python -m veil.compile --docs`: regenerate the tables of docs/inference.md."""

import sys

from .docs import main

sys.exit(main())
