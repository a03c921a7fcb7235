"""Build ecnas/trainer/data/digits32.npz, the embedded default dataset, once.

Source: scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten Digits"
test set (1,797 images of 8×8 pixels, 17 grey levels, 10 classes; CC BY 4.0). Each image is
scaled to 0–255, upscaled ×4 by pixel repetition to 32×32 and repeated over 3 channels, so the
network sees CIFAR-10's shape (3×32×32 uint8, channel-major). A fixed seeded, class-stratified
split gives 1,197 train / 300 validation / 300 test images.

scikit-learn is needed only here, never at run time:

    python3 scripts/build_embedded_dataset.py            # rewrites the file
    python3 scripts/build_embedded_dataset.py --check    # exit 1 if the file differs
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "ecnas" / "trainer" / "data" / "digits32.npz"
SEED = 20240101
N_VALID = 300
N_TEST = 300


def build() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8), 0..16 → 0..255
    big = np.repeat(np.repeat(grey, 4, axis=1), 4, axis=2)  # (N, 32, 32)
    images = np.repeat(big[:, None], 3, axis=1)  # (N, 3, 32, 32)
    labels = digits.target.astype(np.uint8)
    rng = np.random.default_rng(SEED)
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    # stratified: each class contributes its share to validation and test
    n = len(labels)
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        k_valid = round(N_VALID * len(idx) / n)
        k_test = round(N_TEST * len(idx) / n)
        parts["valid"] += idx[:k_valid].tolist()
        parts["test"] += idx[k_valid:k_valid + k_test].tolist()
        parts["train"] += idx[k_valid + k_test:].tolist()
    out: dict[str, np.ndarray] = {}
    for name, idx_list in parts.items():
        idx = rng.permutation(np.array(sorted(idx_list)))
        out[f"x_{name}"] = images[idx]
        out[f"y_{name}"] = labels[idx]
    return out


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args()
    arrays = build()
    if args.check:
        with np.load(OUT) as stored:
            same = set(stored.files) == set(arrays) and all(
                np.array_equal(stored[k], v) for k, v in arrays.items())
        print("up to date" if same else f"{OUT} differs from a fresh build")
        return 0 if same else 1
    OUT.write_bytes(encode(arrays))
    sizes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
