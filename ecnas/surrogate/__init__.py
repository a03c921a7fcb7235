"""Surrogates: extrapolate short runs to full budgets, predict cells never trained.

``Extrapolator`` (short checkpoints → full budget), ``ArchitectureSurrogate`` (cell → energy
and training time), ``SurrogateModel`` (both, saved as data: npz + JSON, never pickle),
``DeviceTransfer`` (device A's model + a few cells measured on device B → device B),
``evaluate`` (held-out accuracy against baselines) and ``evaluate_transfer`` (transfer A → B
from k of B's cells against one scale factor and a surrogate of B's cells alone). Heavy imports happen on first use.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_EXPORTS = {
    "Extrapolator": "ecnas.surrogate.extrapolation",
    "ArchitectureSurrogate": "ecnas.surrogate.architecture",
    "SurrogateModel": "ecnas.surrogate.model",
    "DeviceTransfer": "ecnas.surrogate.transfer",
    "evaluate": "ecnas.surrogate.evaluation",
    "evaluate_transfer": "ecnas.surrogate.transfer_eval",
    "EvaluationReport": "ecnas.surrogate.evaluation",
    "Score": "ecnas.surrogate.evaluation",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
