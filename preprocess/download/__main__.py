"""``python -m preprocess.download``: see :mod:`preprocess.download.cli`."""
import sys

from preprocess.download.cli import main

sys.exit(main())
