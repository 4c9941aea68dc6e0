"""`sparsevit-space`: write a Gradio Space for a SparseViT model (a Hub id or a local model folder), and optionally
push it to the Hub."""

import argparse
import sys

from ..hub.space import DEFAULT_SHORT_DESCRIPTION, push_space, write_space
from ..inference.loading import ModelLoadError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsevit-space",
        description="Write a Gradio Space (app.py, handler.py, visualization.py, requirements.txt, README.md, "
        "examples/) for a SparseViT model; run it with `python DIR/app.py`, or push it with --push.",
    )
    parser.add_argument("model", help="Hub model id (user/name) or a local model folder (copied into the Space)")
    parser.add_argument("--output-dir", required=True, help="folder to write the Space into")
    parser.add_argument("--title", default=None, help="the Space's title (default: SparseViT: <model name>)")
    parser.add_argument("--short-description", default=DEFAULT_SHORT_DESCRIPTION, help="at most 60 characters")
    parser.add_argument("--push", metavar="SPACE_ID", default=None, help="create or update this Space (user/name)")
    parser.add_argument("--private", action="store_true", help="with --push: create the Space private")
    parser.add_argument("--token", default=None, help="with --push: a Hub token (default: your login)")
    args = parser.parse_args(argv)
    if (args.private or args.token) and not args.push:
        parser.error("--private and --token need --push")

    try:
        folder = write_space(
            args.model, args.output_dir, title=args.title, short_description=args.short_description
        )
    except (ModelLoadError, ValueError) as error:
        print(f"sparsevit-space: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote the Space into {folder}; run it with: python {folder / 'app.py'}")
    if args.push:
        try:
            push_space(folder, args.push, token=args.token, private=args.private)
        except Exception as error:  # the Hub's errors (authentication, network, names) are reported, not traced
            print(f"sparsevit-space: error: pushing to {args.push} failed: {error}", file=sys.stderr)
            return 1
        print(f"pushed to https://huggingface.co/spaces/{args.push}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
