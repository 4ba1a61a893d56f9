"""CI: the HTML report of the smoke run holds the results table, the learning curves and the
test plot (file names as Snakemake's report lists them). Exits non-zero, naming what is missing."""
import sys
from pathlib import Path

EXPECTED = ("results.csv", "learning_curves.png", "test_predictions.png")


def main(path: str) -> int:
    report = Path(path)
    if not report.is_file() or report.stat().st_size < 10_000:
        print(f"check_report: {report} is missing or nearly empty", file=sys.stderr)
        return 1
    text = report.read_text(errors="replace")
    missing = [name for name in EXPECTED if name not in text]
    if missing:
        print(f"check_report: {report} does not mention {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"check_report: {report} ({report.stat().st_size:,} bytes) holds {', '.join(EXPECTED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
