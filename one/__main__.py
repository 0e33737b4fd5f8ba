"""Allow ``python -m one``."""
import sys

from one.cli import main

sys.exit(main())
