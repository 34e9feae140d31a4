"""``imagecatcher-client``: rig-side actions (§10.4).

The actions (send-acq-log, send-rois, send-tile, send-acq, end-acq) arrive
with the client work; this entry point exists so packaging and scripts can
rely on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

ACTIONS = (
    "send-acq-log",
    "send-rois",
    "create-rois",
    "send-tile",
    "send-acq",
    "end-acq",
)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    p = argparse.ArgumentParser(prog="imagecatcher-client", allow_abbrev=False)
    p.add_argument("-action", "--action", choices=ACTIONS, default="send-tile")
    args, _rest = p.parse_known_args(argv)
    print(
        f"imagecatcher-client: action {args.action} is not implemented yet",
        file=sys.stderr,
    )
    sys.exit(2)
