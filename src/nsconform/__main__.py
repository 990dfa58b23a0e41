"""`python -m nsconform`: the `nsconform` command."""

import sys

from nsconform.cli import main

sys.exit(main())
