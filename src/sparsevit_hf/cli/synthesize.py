"""`sparsevit-synthesize`: write the built-in synthetic tampering data set to a `Tp/`, `Gt/`, `Au/` folder."""

import argparse
import sys
from collections.abc import Sequence

from ..data.synthetic import SPLIT_PHOTOS, write_synthetic_dataset


def main(argv: Sequence[str] | None = None) -> int:
    """`sparsevit-synthesize`: write the synthetic tampering data set to a Tp/Gt/Au folder."""
    parser = argparse.ArgumentParser(
        prog="sparsevit-synthesize",
        description="Write the deterministic synthetic image-tampering data set (Tp/, Gt/, Au/ folders) "
        "built from scikit-image's sample photographs.",
    )
    parser.add_argument("--output-dir", required=True, help="folder to write Tp/, Gt/ and Au/ into")
    parser.add_argument("--num-images", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument(
        "--split", choices=sorted(SPLIT_PHOTOS), default="train", help="source photographs (default train)"
    )
    parser.add_argument(
        "--authentic-fraction", type=float, default=None, help="share of untouched images (default 0.2)"
    )
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default 0: this process)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    try:
        counts = write_synthetic_dataset(
            args.output_dir,
            num_images=args.num_images,
            size=args.size,
            seed=args.seed,
            split=args.split,
            authentic_fraction=args.authentic_fraction,
            num_workers=args.workers,
            progress=not args.no_progress,
        )
    except (ValueError, ImportError, OSError) as exc:
        print(f"sparsevit-synthesize: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {counts['total']} images to {args.output_dir}: {counts['tampered']} tampered "
        f"({counts['splicing']} splicing, {counts['copy_move']} copy-move, {counts['removal']} removal) in Tp/ "
        f"with masks in Gt/, {counts['authentic']} authentic in Au/"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
