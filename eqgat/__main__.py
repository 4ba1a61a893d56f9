import sys

if sys.argv[1:2] and sys.argv[1] in ("train", "evaluate", "predict"):
    from eqgat.allocator import start_tuned

    start_tuned()  # re-executes once with glibc's tcache off: before anything else runs

from eqgat.cli import main  # noqa: E402

sys.exit(main())
