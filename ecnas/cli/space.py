"""``ecnas spec``: a cell's pruned form, validity, iso-hash, parameter count and FLOPs.

A well-formed spec that breaks the space's rules (disconnected, too many vertices or edges
after pruning) is a result, not an error: ``valid`` is false, ``invalid_reason`` says why,
the costs are null and the exit status is 0. Malformed input (a matrix string that is not a
square 0/1 adjacency, an unknown op, a vertex/op count mismatch) exits 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from ecnas.cli._output import add_json_flag, emit
from ecnas.errors import InputError

FLOPS_UNIT = "forward FLOPs per image (2 per multiply-add of convolutions and the dense layer)"


def register(subparsers: Any) -> None:
    """Add ``ecnas spec`` to ``subparsers``."""
    p = subparsers.add_parser(
        "spec",
        help="pruned cell, validity, arch_hash, trainable_params and FLOPs of a NAS-Bench-101 cell",
        description=(
            "Prune a NAS-Bench-101 cell and print its iso-hash (equal to NAS-Bench-101's and "
            "EC-NAS's), analytic trainable parameters and forward FLOPs per image. An invalid "
            "but well-formed spec prints valid=false with the reason and exits 0."
        ),
    )
    p.add_argument("--matrix", required=True,
                   help="row-major 0/1 adjacency string, e.g. 0110001000010000 (upper-triangular)")
    p.add_argument("--ops", required=True,
                   help="comma-separated ops, input first and output last, e.g. "
                        "input,conv3x3-bn-relu,maxpool3x3,output")
    p.add_argument("--stem-channels", type=int, default=128, help="stem width (default 128)")
    p.add_argument("--stacks", type=int, default=3, help="number of stacks (default 3)")
    p.add_argument("--cells-per-stack", type=int, default=3, help="cells per stack (default 3)")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the dense layer (default 10)")
    p.add_argument("--in-channels", type=int, default=3, help="image channels (default 3)")
    p.add_argument("--image-size", type=int, default=32, help="image side for FLOPs (default 32)")
    p.add_argument("--canonical", action="store_true",
                   help="renumber the cell to NAS-Bench-101's stored form first (whose parameter "
                        "count NAS-Bench-101 and EC-NAS record for this hash)")
    add_json_flag(p)
    p.set_defaults(func=run_spec)


def describe_spec(
    matrix: str,
    ops: str,
    *,
    stem_channels: int = 128,
    num_stacks: int = 3,
    cells_per_stack: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    canonical: bool = False,
) -> dict[str, Any]:
    """What ``ecnas spec --json`` prints, as a dict (the Python side of the command)."""
    from ecnas.space import ModelSpec, canonical_spec
    from ecnas.space.cost import NetworkShape, forward_flops, trainable_params

    spec = ModelSpec(matrix, ops)
    canon = canonical_spec(spec) if spec.valid else None
    if canonical and canon is not None:
        spec = canon
    network = NetworkShape(stem_channels, num_stacks, cells_per_stack, num_classes, in_channels)
    if image_size < 1:
        raise InputError(f"--image-size must be a positive integer, got {image_size}")
    kw = dict(stem_channels=stem_channels, num_stacks=num_stacks, cells_per_stack=cells_per_stack,
              num_classes=num_classes, in_channels=in_channels)
    out: dict[str, Any] = {
        "matrix": spec.matrix_str,
        "ops": spec.ops_str,
        "valid": spec.valid,
        "invalid_reason": spec.invalid_reason or None,
        "arch_hash": spec.hash() if spec.valid else None,
        "trainable_params": trainable_params(spec, **kw) if spec.valid else None,
        "flops": forward_flops(spec, image_size=image_size, **kw) if spec.valid else None,
        "flops_unit": FLOPS_UNIT,
        "num_vertices": spec.num_vertices,
        "num_edges": spec.num_edges,
        # isomorphic renumberings share the hash but may differ by a few channels' parameters
        "canonical_matrix": canon.matrix_str if canon is not None else None,
        "canonical_ops": canon.ops_str if canon is not None else None,
        "source": "analytic",  # computed from the architecture, not measured
        "network": {
            "stem_channels": network.stem_channels,
            "num_stacks": network.num_stacks,
            "cells_per_stack": network.cells_per_stack,
            "num_classes": network.num_classes,
            "in_channels": network.in_channels,
            "image_size": image_size,
        },
    }
    return out


def _text(r: dict[str, Any]) -> str:
    lines = []
    if r["valid"]:
        lines.append(f"arch_hash         {r['arch_hash']}")
        lines.append("valid             yes")
    else:
        lines.append(f"valid             no: {r['invalid_reason']}")
    lines.append(f"matrix (pruned)   {r['matrix']}")
    lines.append(f"ops (pruned)      {r['ops']}")
    lines.append(f"vertices, edges   {r['num_vertices']}, {r['num_edges']}")
    if r["valid"] and r["canonical_matrix"] != r["matrix"]:
        lines.append(f"NAS-Bench-101 form {r['canonical_matrix']} [{r['canonical_ops']}] "
                     "(--canonical for its costs)")
    if r["valid"]:
        n = r["network"]
        lines.append(
            f"trainable_params  {r['trainable_params']:,} (analytic; stem {n['stem_channels']}, "
            f"{n['num_stacks']} stacks × {n['cells_per_stack']} cells, {n['num_classes']} classes)"
        )
        lines.append(
            f"flops             {r['flops'] / 1e6:,.1f} MFLOPs forward per "
            f"{n['image_size']}×{n['image_size']} image (analytic; 1 multiply-add = 2 FLOPs)"
        )
    return "\n".join(lines)


def run_spec(args: argparse.Namespace) -> int:
    """``ecnas spec``: a cell's pruned form, validity, hash, trainable parameters and FLOPs."""
    result = describe_spec(
        args.matrix, args.ops, stem_channels=args.stem_channels, num_stacks=args.stacks,
        cells_per_stack=args.cells_per_stack, num_classes=args.num_classes,
        in_channels=args.in_channels, image_size=args.image_size, canonical=args.canonical,
    )
    emit(args.json, result, _text)
    return 0
