"""``python -m eqgat.tasks {generate-triangle,build-graphs} ...``: see :func:`eqgat.tasks.preprocess_main`."""
import sys

from eqgat.tasks import preprocess_main

sys.exit(preprocess_main())
