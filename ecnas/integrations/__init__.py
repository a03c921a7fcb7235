"""Integrations with test and training frameworks (pytest, PyTorch Lightning, Hugging Face).

Each lives in its own module and imports its framework only when used, so none of them is a
hard dependency of ecnas.
"""
