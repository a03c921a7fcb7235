"""TensorFlow 1's ``RMSPropOptimizer`` (what NAS-Bench-101 trained with) for PyTorch.

Per parameter ``w`` with gradient ``g`` (plus the L2 term ``weight_decay · w``)::

    ms  ← decay · ms + (1 − decay) · g²          (ms starts at 1, as TF's slot initializer)
    mom ← momentum · mom + lr · g / √(ms + ε)     (ε inside the root, lr inside the buffer)
    w   ← w − mom
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp with TF1 semantics (see the module docstring); ``lr`` may change every step."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.1, decay: float = 0.9,
                 momentum: float = 0.9, eps: float = 1.0, weight_decay: float = 0.0) -> None:
        defaults = {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps,
                    "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter with a gradient, by the TF1 rule in the module doc;
        returns the closure's loss when one is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum = group["lr"], group["decay"], group["momentum"]
            eps, wd = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(decay).addcmul_(g, g, value=1.0 - decay)
                mom.mul_(momentum).addcdiv_(g, ms.add(eps).sqrt_(), value=lr)
                p.sub_(mom)
        return loss
