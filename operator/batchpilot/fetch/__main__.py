"""python -m batchpilot.fetch --uri URI --dest DIR: the model fetcher of the init container.

python -m batchpilot.fetch --link CLAIM --dest DIR: a PersistentVolumeClaim's model directory laid out as links
(fetch/link.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.fetcher import fetch
from batchpilot.fetch.link import link
from batchpilot.fetch.progress import Progress, credential_values


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when dest holds the model, 1 with one line on stderr saying what failed and the fix."""
    parser = argparse.ArgumentParser(prog="python -m batchpilot.fetch", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--uri", help="storageUri: https://.../model.tar.gz, s3://... or gs://...")
    source.add_argument("--link", type=Path, help="a mounted claim's model directory to lay out as links")
    parser.add_argument("--dest", required=True, type=Path, help="model directory to fill, e.g. /models/NAME")
    args = parser.parse_args(argv)
    progress = Progress(sys.stderr, hidden=credential_values(os.environ))
    try:
        if args.link is not None:
            link(args.link, args.dest, progress)
        else:
            fetch(args.uri, args.dest, os.environ, progress)
    except FetchError as e:
        progress.fail(str(e))
        return 1
    except Exception as e:  # one readable line for the pod's status, not a traceback
        progress.fail(f"{args.uri or args.link} into {args.dest}: unexpected {e.__class__.__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
