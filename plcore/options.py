"""Options of a certification run (the ``options`` JSON of the HTTP API, the CLI flags)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Budget = Literal["fast", "standard", "thorough"]


class CertifyOptions(BaseModel):
    """What to compute and how hard to try. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: Budget = Field(
        "standard",
        description="Effort for the ball probes and the checking run: fast, standard or thorough.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="Seed of every random choice (probes, SGD batches); torch takes 64 bits.",
    )
    device: str = Field(
        "cpu", description="Torch device: 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present)."
    )
    target_loss: float | None = Field(
        None,
        gt=0,
        description="Loss (1/2 sum of squares) to predict the iterations for; "
        "default 1e-6 times the initial loss.",
    )
    batch_sizes: list[int] = Field(
        default_factory=list, description="SGD mini-batch sizes to give predictions for."
    )
    learning_rate: float | None = Field(
        None, gt=0, description="The learning rate you plan to use, to be checked for safety."
    )
    lr_convention: Literal["mse", "sum"] = Field(
        "mse",
        description="Loss that learning_rate refers to: 'mse' = (1/n) sum ||f - y||^2, "
        "'sum' = 1/2 sum ||f - y||^2.",
    )
    kernel_method: Literal["auto", "reference", "structured"] = Field(
        "auto", description="Tangent-kernel implementation (see plcore.kernel.KernelMethod)."
    )
    validation_steps: int | None = Field(
        None, ge=0, le=1_000_000, description="Steps of the checking GD run (default by budget)."
    )
    validate_sgd: bool = Field(False, description="Also run SGD for the first batch size.")
    sgd_confidence: float = Field(
        0.9, gt=0, lt=1, description="1 - delta for the SGD radius (THEORY.md section 6)."
    )

    trainable: list[str] | None = Field(
        None,
        description="Parameters to train: names or glob patterns of ONNX initializers (of the "
        "module's parameters for JSON specs); default: the loader's (float initializers with "
        ">= 2 entries, not BatchNormalization running statistics; every spec parameter).",
    )
    frozen: list[str] = Field(
        default_factory=list,
        description="Parameters not to train (names or glob patterns), applied after trainable; "
        "e.g. freeze every hidden layer to certify last-layer fine-tuning.",
    )

    @field_validator("trainable", "frozen")
    @classmethod
    def _non_empty_patterns(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not p.strip() for p in v):
            raise ValueError(f"parameter patterns must be non-empty strings, got {v!r}")
        return v

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, v: list[int]) -> list[int]:
        bad = [b for b in v if b < 1]
        if bad:
            raise ValueError(f"batch sizes must be >= 1, got {bad}")
        return sorted(set(v))
