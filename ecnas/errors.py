"""Exceptions that carry the command line's exit status.

Library code raises these; the CLI turns them into one line on stderr and an exit status
(2 for bad usage or input, 1 for a failed check). Nothing here imports anything heavy.
"""

from __future__ import annotations


class EcnasError(Exception):
    """Base class of every error ecnas raises on purpose."""

    exit_status = 1


class InputError(EcnasError, ValueError):
    """Bad usage or bad input (a malformed file, an invalid spec, a missing path).

    The message must be one line that names the offending thing and says what is wrong.
    """

    exit_status = 2


class NotFittedError(InputError):
    """A model (surrogate, extrapolator, transfer, learner) used before ``fit()``; scikit-learn's
    ``NotFittedError`` in ecnas's terms (an :class:`InputError`: exit status 2)."""


class CheckFailed(EcnasError):
    """A consistency check or a metered command failed (exit status 1)."""

    exit_status = 1


class MeterUnavailable(EcnasError):
    """A meter cannot read; the message says why and how to fix it."""

    exit_status = 1
