"""Serve the triplet labelling page (the same as ``tiefwatch label``), for use from a checkout.

Examples: ``python tools/label_triplets.py --workspace ws --triplets triplets.csv``; for other machines on the
network, ``--host 0.0.0.0 --token SECRET`` (``python -c 'import secrets; print(secrets.token_urlsafe())'``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tiefwatch.label import serve_labelling
from tiefwatch.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Label watch triplets (anchor / near / far) in the browser.")
    parser.add_argument("--workspace", "-w", help="state folder (default ./.tiefwatch or $TIEFWATCH_WORKSPACE)")
    parser.add_argument("--triplets", type=Path, default=Path("triplets.csv"), help="CSV the triplets are added to")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs --token")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--token",
        default=os.environ.get("TIEFWATCH_LABEL_TOKEN"),
        help="secret every request must carry, required off loopback (default $TIEFWATCH_LABEL_TOKEN, kept out of ps)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    workspace = Workspace(args.workspace)
    try:
        serve_labelling(
            workspace,
            workspace.load_config(),
            args.triplets,
            host=args.host,
            port=args.port,
            token=args.token,
            open_browser=args.open,
        )
    except (ValueError, RuntimeError, FileNotFoundError, OSError) as error:
        print(f"label_triplets: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
