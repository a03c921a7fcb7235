"""Calibrating a device against a reference meter (``ecnas calibrate``), producing the
hardware profile that :mod:`ecnas.profiles` keeps and matches.

:mod:`.procedure` (the procedure: record, fit, estimate mode), :mod:`.measuring` (its reads,
through the meters), :mod:`.loads` (the burns), :mod:`.recording` (the run kept beside the
profile), :mod:`.reference` (the reference meter's log), :mod:`.timeshift` (its clock shift),
:mod:`.fit` (gain and offset with their uncertainty), :mod:`.measured_profile` (the profile
written). Names load on first use: the fit imports numpy/scipy, the GPU burn torch.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_EXPORTS = {
    "calibrate": "ecnas.calibration.procedure",
    "CalibrationOptions": "ecnas.calibration.procedure",
    "FitOptions": "ecnas.calibration.procedure",
    "CalibrationRun": "ecnas.calibration.procedure",
    "fit_record": "ecnas.calibration.procedure",
    "FitResult": "ecnas.calibration.fit",
    "fit_reference": "ecnas.calibration.fit",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
