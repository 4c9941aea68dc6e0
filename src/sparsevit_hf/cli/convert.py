"""`sparsevit-convert`: turn the official SparseViT checkpoint, or an ImageNet UniFormer-B checkpoint, into a
`save_pretrained` model folder."""

import argparse
import sys
from pathlib import Path

from ..convert import CheckpointError, convert_official_checkpoint, init_from_uniformer, listing
from ..image_processing_sparsevit import SparseViTImageProcessor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsevit-convert",
        description="Convert the official SparseViT checkpoint, or an ImageNet UniFormer-B checkpoint, into a "
        "save_pretrained model folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="official SparseViT checkpoint (.pth)")
    source.add_argument("--uniformer", help="ImageNet UniFormer-B checkpoint (uniformer_base[_ls]_in1k.pth)")
    parser.add_argument("--output-dir", required=True, help="folder to write the save_pretrained model into")
    parser.add_argument(
        "--official-reinit",
        action="store_true",
        help="with --uniformer: re-initialise the backbone's Linear and LayerNorm layers as the official code does",
    )
    args = parser.parse_args(argv)
    if args.official_reinit and not args.uniformer:
        parser.error("--official-reinit only applies with --uniformer")

    try:
        if args.checkpoint:
            model, report = convert_official_checkpoint(args.checkpoint)
        else:
            model, report = init_from_uniformer(args.uniformer, reinit=args.official_reinit)
    except (CheckpointError, FileNotFoundError) as error:
        print(f"sparsevit-convert: error: {error}", file=sys.stderr)
        return 2

    output_dir = Path(args.output_dir)
    model.save_pretrained(output_dir)
    SparseViTImageProcessor().save_pretrained(output_dir)
    print(f"converted {report.converted} tensors into {output_dir}")
    if report.dropped:
        print(f"dropped {len(report.dropped)} unused tensors: {listing(report.dropped, limit=8)}")
    if report.missing:
        print(f"left at their initial values ({len(report.missing)}): {listing(report.missing, limit=8)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
