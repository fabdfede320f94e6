"""Small JSON-spec models for tests of every kernel / Hessian method against dense references.

Each entry is ``(name, spec, input_shape)``; every model has at most a few hundred parameters so
that a dense Jacobian (N x m) and dense output Hessians (N x m x m) stay cheap. The expected
parameter counts are checked by hand in ``tests/plcore/models/test_spec.py``.
"""

from __future__ import annotations

from typing import Any


def spec_zoo() -> list[tuple[str, dict[str, Any], tuple[int, ...]]]:
    """Fresh copies of the zoo specs: (name, spec, per-sample input shape)."""
    mlp = {"type": "mlp", "seed": 0}
    return [
        (
            "mlp_ntk_tanh",
            {**mlp, "input_dim": 3, "widths": [8, 8], "output_dim": 1, "activation": "tanh"},
            (3,),
        ),
        (
            "mlp_standard_gelu",
            {
                **mlp,
                "input_dim": 4,
                "widths": [10],
                "output_dim": 2,
                "activation": "gelu",
                "parameterization": "standard",
                "seed": 1,
            },
            (4,),
        ),
        (
            "mlp_sigmoid_output",
            {
                **mlp,
                "input_dim": 3,
                "widths": [6],
                "output_dim": 1,
                "activation": "softplus",
                "output_activation": "sigmoid",
            },
            (3,),
        ),
        (
            "linear",
            {**mlp, "input_dim": 5, "widths": [], "output_dim": 1, "bias_std": 0.5},
            (5,),
        ),
        (
            "mlp_erf_multi_output",
            {
                **mlp,
                "input_dim": 4,
                "widths": [7, 5],
                "output_dim": 3,
                "activation": "erf",
                "weight_std": 1.5,
                "seed": 2,
            },
            (4,),
        ),
        (
            "cnn_tanh",
            {
                "type": "layers",
                "input_shape": [1, 6, 6],
                "output_dim": 1,
                "seed": 3,
                "layers": [
                    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                    {"type": "activation", "name": "tanh"},
                    {"type": "avgpool2d", "kernel_size": 2},
                    {"type": "flatten"},
                    {"type": "linear", "out": 1},
                ],
            },
            (1, 6, 6),
        ),
        (
            "residual_layernorm",
            {
                "type": "layers",
                "input_shape": [4],
                "output_dim": 2,
                "seed": 4,
                "layers": [
                    {"type": "linear", "out": 6},
                    {"type": "activation", "name": "tanh"},
                    {
                        "type": "residual",
                        "layers": [
                            {"type": "layernorm"},
                            {"type": "linear", "out": 6},
                            {"type": "activation", "name": "silu"},
                        ],
                    },
                    {"type": "linear", "out": 2},
                ],
            },
            (4,),
        ),
        (
            "cnn_residual_global_pool",
            {
                "type": "layers",
                "input_shape": [2, 5, 5],
                "output_dim": 2,
                "seed": 5,
                "layers": [
                    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                    {"type": "activation", "name": "gelu"},
                    {
                        "type": "residual",
                        "layers": [
                            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                            {"type": "layernorm"},
                            {"type": "activation", "name": "sin"},
                        ],
                    },
                    {"type": "global_avgpool"},
                    {"type": "linear", "out": 2},
                ],
            },
            (2, 5, 5),
        ),
        (
            "mlp_relu",
            {**mlp, "input_dim": 3, "widths": [5], "output_dim": 1, "activation": "relu"},
            (3,),
        ),
    ]
