"""Integrations with the tools people already run: pytest, PyTorch Lightning and the Hugging
Face Trainer (callbacks that also log energy to TensorBoard, MLflow, W&B …), syne-tune (a
benchmark bundle as a blackbox) and Prometheus (campaign and job metrics).

Each lives in its own module and imports its library only when used, so none of them is a
hard dependency of ecnas.
"""
