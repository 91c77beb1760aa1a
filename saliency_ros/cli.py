"""`saliency-ros` command line.

Subcommands import their heavy dependencies lazily: `export` needs the training extra (torch),
the on-board commands must run where torch is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from saliency_ros.paths import repo_root

DEFAULT_EXPORTS = (("skd_sst", 64), ("skd_sst", 32), ("sod_effl0", 256))


def _parse_model_spec(text: str) -> tuple[str, int]:
    name, _, size = text.partition(":")
    if not size.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:SIZE such as skd_sst:64, got {text!r}")
    return name, int(size)


def _cmd_export(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from saliency_ros.runtime.timing import time_onnx
    from saliency_ros.training.export import export_untrained

    console = Console()
    table = Table(title=f"Exported to {args.out} (random weights: architecture and speed only)")
    for col in ("model", "input", "params", "MFLOPs", "file MB", "ORT 1 thread", "FPS"):
        table.add_column(col, justify="right" if col != "model" else "left")
    with console.status("exporting") as status:
        for name, size in args.models:
            status.update(f"exporting {name} at {size}x{size}")
            result = export_untrained(name, size, args.out, seed=args.seed)
            timing = time_onnx(result.onnx_path, threads=1, seconds=args.seconds)
            table.add_row(
                name, f"{size}x{size}", f"{result.parameters:,}", f"{result.flops / 1e6:.1f}",
                f"{result.bytes / 1e6:.2f}", f"{timing.p50_ms:.3f} ms", f"{timing.fps:,.0f}",
            )
    console.print(table)
    console.print(
        "These files are NOT trained weights: they exist to check export, parity and speed. "
        "Trained models live in models/ with their cards."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliency-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser(
        "export",
        help="export registered architectures to ONNX + model card (untrained weights)",
        description="Export models to ONNX with model cards, then time them in ONNX Runtime.",
    )
    exp.add_argument("--out", type=Path, default=repo_root() / "build" / "models",
                     help="output folder (default: build/models; never models/)")
    exp.add_argument("--models", type=_parse_model_spec, nargs="+",
                     default=list(DEFAULT_EXPORTS), metavar="NAME:SIZE",
                     help="e.g. skd_sst:64 sod_effl0:256 (default: %(default)s)")
    exp.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    exp.add_argument("--seconds", type=float, default=1.0, help="timing window per model")
    exp.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "out", None) is not None and args.out.resolve() == (repo_root() / "models").resolve():
        print("saliency-ros: refusing to write untrained exports into models/", file=sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
