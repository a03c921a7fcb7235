"""The demo's campaign file: written to disk so a user can re-run it with ``ecnas run``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ecnas.demo.config import DemoConfig


def render_campaign(config: DemoConfig, cells: Sequence[Any]) -> str:
    """TOML for the sampled cells: all at the short budget, the first few also at a longer one
    (so the extrapolation model has real longer runs to learn from)."""
    lines = [
        "# Written by `ecnas demo`; re-run with: ecnas run campaign.toml --store store.sqlite",
        "[campaign]",
        'name = "ecnas-demo"',
        'dataset = "embedded"',
        f"seed = {config.seed}",
        f"budgets = [{config.measured_budget}]",
        "repeats = 1",
        'devices = ["cpu"]',
        "",
        "[recipe]",
        f"stem_channels = {config.stem_channels}",
        f"num_stacks = {config.num_stacks}",
        f"cells_per_stack = {config.cells_per_stack}",
        f"batch_size = {config.batch_size}",
        "checkpoints = [0.0, 0.5, 1.0]",
    ]
    if config.max_train_images:
        lines.append(f"max_train_images = {config.max_train_images}")
    lines.append("")
    for i, cell in enumerate(cells):
        lines += [
            "[[architectures.list]]",
            f'matrix = "{cell.matrix_str}"',
            f'ops = "{cell.ops_str}"',
        ]
        if i < config.full_budget_runs:
            lines.append(f"budgets = [{config.measured_budget}, {config.full_budget}]")
        lines.append("")
    return "\n".join(lines)
