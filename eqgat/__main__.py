import sys

from eqgat.cli import main

sys.exit(main())
