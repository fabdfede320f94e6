"""Regenerate the example files of the README tour (deterministic; run from the repo root).

python examples/make_examples.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 32))
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # n = 16 unit-norm inputs in d = 32
    y = rng.standard_normal(16)
    np.savez(HERE / "sphere16.npz", X=X, y=y)
    spec = {
        "type": "mlp",
        "input_dim": 32,
        "widths": [4096],
        "output_dim": 1,
        "activation": "tanh",
        "output_activation": None,
        "parameterization": "ntk",
        "weight_std": 1.0,
        "bias_std": 0.1,
        "seed": 0,
    }
    (HERE / "mlp_tanh_4096.json").write_text(json.dumps(spec, indent=2) + "\n")


if __name__ == "__main__":
    main()
