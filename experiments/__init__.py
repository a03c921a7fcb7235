"""Experiments run with ecnas: drivers of one-off measurement campaigns, kept out of the library.

Each folder is one experiment; its driver may name files of this repository (the data it reads,
the folder its results are committed to), which the library (``ecnas/``) never does. Run them
from a checkout with ``PYTHONPATH=.`` or through their script in ``scripts/``.
"""
