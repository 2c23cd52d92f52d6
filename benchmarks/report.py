"""How every benchmark ends: its figures as one JSON line, failing when its ratio passes an allowed bound."""

import argparse
import json


def finish(result: dict, ratio: str, max_ratio: float | None = None) -> None:
    """Print ``result`` as one JSON line; exit non-zero when ``result[ratio]`` exceeds ``max_ratio``."""
    print(json.dumps(result))
    if max_ratio is not None and result[ratio] > max_ratio:
        raise SystemExit(f"{ratio} {result[ratio]} exceeds {max_ratio}")


def ratio_bound(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed arguments, with ``--max-ratio``: the bound ``finish`` holds the ratio to (none by default)."""
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 if the ratio exceeds this")
    return parser.parse_args()
