import sys

from eqgat.allocator import TUNED_COMMANDS, start_tuned

if sys.argv[1:2] and sys.argv[1] in TUNED_COMMANDS:
    start_tuned()  # re-executes once with glibc's small-chunk caches off: before anything else runs

from eqgat.cli import main  # noqa: E402

sys.exit(main())
