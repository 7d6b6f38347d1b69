"""What the analysis scripts share: the sweep arguments and the one-paragraph error for user mistakes."""

import argparse
import sys
from typing import Callable

from raysym.errors import UserError


def sweep_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the sweep (name or parent run id), --tracking-uri and --experiment."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("sweep", help="the sweep's name or its parent run id")
    ap.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    ap.add_argument("--experiment", help="default: look in every experiment")
    return ap


def run(main: Callable[[], None]) -> None:
    try:
        main()
    except UserError as exc:  # a bad sweep name or URI: one paragraph, exit code 2, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
