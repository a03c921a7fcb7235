"""The contributions room: a lab's device contribution, made, verified and merged.

``make.py`` bundles a profile, a device table measured on it and a manifest into a
``.tar.gz`` (``ecnas contribute``); ``verify.py`` opens such an archive without extracting it
and checks every part (``ecnas contribution verify``); ``merge.py`` adds a verified device to a
benchmark bundle (``ecnas contribution merge``). The room sits above ``benchmark`` (a merge
writes a bundle) and ``tables`` (every part is checked as a table); its commands live in
``ecnas.cli.contributions``.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_LAZY = {
    "make_bundle": "ecnas.contributions.make",
    "ContributionResult": "ecnas.contributions.make",
    "verify_contribution": "ecnas.contributions.verify",
    "read_contribution": "ecnas.contributions.verify",
    "VerifyReport": "ecnas.contributions.verify",
    "merge_contribution": "ecnas.contributions.merge",
    "MergeReport": "ecnas.contributions.merge",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
