"""The campaign file ``ecnas demo`` writes: its sampled cells at the short budget, the first
few also at the longer one (per-entry ``budgets``), with the demo's scaled-down recipe."""

from __future__ import annotations

from typing import Any


def render_campaign(config: Any, cells: list[Any]) -> str:
    """TOML text for a :class:`ecnas.demo.config.DemoConfig` and its cells (ModelSpecs)."""
    lines = ["# written by ecnas demo; see docs/campaigns.md for every key", "",
             "[campaign]", 'name = "ecnas-demo"', 'dataset = "embedded"',
             f"seed = {int(config.seed)}", f"budgets = [{int(config.measured_budget)}]",
             "repeats = 1", "retries = 1", 'devices = ["cpu"]', "", "[architectures]", ""]
    for i, cell in enumerate(cells):
        budgets = [int(config.measured_budget)]
        if i < config.full_budget_runs and config.full_budget != config.measured_budget:
            budgets.append(int(config.full_budget))
        lines += ["[[architectures.list]]", f'matrix = "{cell.matrix_str}"',
                  f'ops = "{cell.ops_str}"', f"budgets = {budgets}", ""]
    lines += ["[recipe]", f"stem_channels = {int(config.stem_channels)}",
              f"num_stacks = {int(config.num_stacks)}",
              f"cells_per_stack = {int(config.cells_per_stack)}",
              f"batch_size = {int(config.batch_size)}", "checkpoints = [0.0, 0.5, 1.0]"]
    if config.max_train_images is not None:
        lines.append(f"max_train_images = {int(config.max_train_images)}")
    return "\n".join(lines) + "\n"
