"""Verdict rules and reasons."""

from __future__ import annotations

import math

import torch

from plcore.certificate.radius import Closure
from plcore.certificate.verdict import (
    decide,
    has_duplicate_inputs,
    init_closure,
    is_singular,
    model_notes,
    singular_kernel_reason,
)
from plcore.estimate.spectral import InitialQuantities
from plcore.report.schema import PathCertificate
from tests.plcore.certify_cases import linear_spec, mlp


def _iq(lam: float, lam_max: float = 4.0, rn: float = 1.0) -> InitialQuantities:
    return InitialQuantities(
        r0=torch.ones(2),
        loss=0.5 * rn * rn,
        residual_norm=rn,
        eigenvalues=torch.tensor([lam]),
        lambda_min=lam,
        lambda_min_raw=lam,
        lambda_max=lam_max,
        condition_number=lam_max / lam if lam > 0 else math.inf,
        jacobian_norm=2.0,
        n_samples=2,
        n_outputs=1,
        N=2,
        m=10,
    )


def _closure(closes: bool) -> Closure:
    return Closure("rigorous" if closes else None, "proven bounds", 1.0, 2.0, 0.0, 1.0, 0.5)


def _no_path() -> PathCertificate:
    return PathCertificate(residual_threshold=0.1, certified_from_step=None)


def _at_init(closes: bool):  # type: ignore[no-untyped-def]
    return init_closure(
        closes=closes,
        residual_norm=1.0,
        lambda0=1.0,
        jac_norm=2.0,
        beta=0.5,
        beta_kind="proven",
        r_star=0.1,
        beta_estimated=0.25,
    )


X = torch.eye(2, 3)


def test_closure_at_w0_is_certified_with_its_tier() -> None:
    reasons: list[str] = []
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(1.0),
        _closure(True),
        _at_init(True),
        True,
        None,
        _no_path(),
        reasons,
        "proven",
        0.5,
    )
    assert v == ("certified", "rigorous") and reasons[0].startswith("certified at w0")


def test_run_contradicting_the_certificate_makes_it_inconclusive() -> None:
    reasons: list[str] = []
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(1.0),
        _closure(True),
        _at_init(True),
        False,
        7,
        _no_path(),
        reasons,
        "proven",
        0.5,
    )
    assert v[0] == "inconclusive" and reasons[0].startswith("CONTRADICTION")
    assert "step 7" in reasons[0]


def test_no_closure_anywhere_is_not_certified_with_factor() -> None:
    reasons: list[str] = []
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(1.0),
        _closure(False),
        _at_init(False),
        None,
        None,
        _no_path(),
        reasons,
        "proven",
        0.5,
    )
    assert v == ("not_certified", "estimated")
    assert "does not apply at w0" in reasons[0] and "by a factor 10" in reasons[0]
    assert "estimated beta_F instead: r* = " in reasons[0]
    assert "no proof that gradient descent fails" in reasons[-1]


def test_path_hit_certifies_and_path_contradiction_does_not() -> None:
    hit = PathCertificate(
        residual_threshold=0.1,
        certified_from_step=12,
        tier="estimated",
        bound_held_after=True,
        residual_at_step=0.01,
        residual_threshold_at_step=0.05,
    )
    reasons: list[str] = []
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(1.0),
        _closure(False),
        _at_init(False),
        None,
        None,
        hit,
        reasons,
        "proven",
        0.5,
    )
    assert v == ("certified", "estimated") and "step 12 of the checking run" in reasons[1]
    bad = hit.model_copy(update={"bound_held_after": False})
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(1.0),
        _closure(False),
        _at_init(False),
        None,
        None,
        bad,
        [],
        "proven",
        0.5,
    )
    assert v[0] == "inconclusive"


def test_singular_kernel_without_structural_cause_is_inconclusive() -> None:
    reasons: list[str] = []
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(0.0),
        None,
        _at_init(False),
        None,
        None,
        _no_path(),
        reasons,
        "estimated",
        0.5,
    )
    assert v == ("inconclusive", "estimated") and "numerically zero" in reasons[0]


def test_singularity_threshold_and_duplicates() -> None:
    assert is_singular(1e-13, 1.0) and is_singular(-1e-20, 1.0) and not is_singular(1e-11, 1.0)
    assert has_duplicate_inputs(torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
    assert not has_duplicate_inputs(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    why, structural = singular_kernel_reason(
        mlp(linear_spec(2)),
        torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]),
        0.0,
        1.0,
    )
    assert not structural and "affinely dependent" in why


def test_notes_flag_relu_and_saturated_output() -> None:
    spec = {
        "type": "mlp",
        "input_dim": 2,
        "widths": [4],
        "output_dim": 1,
        "activation": "relu",
        "output_activation": "tanh",
    }
    notes = model_notes(mlp(spec), torch.tensor([[0.5], [1.5]]))
    assert any(n.startswith("heuristic:") for n in notes)
    assert any("saturates" in n and "1 target value(s)" in n for n in notes)


def test_estimated_closure_at_w0_then_rigorous_path_certificate_is_rigorous() -> None:
    estimated = Closure("estimated", "probe estimates", 1.0, 2.0, 0.1, 1.0, 0.5)
    path = PathCertificate(
        residual_threshold=0.1,
        certified_from_step=30,
        tier="rigorous",
        bound_held_after=True,
        residual_at_step=0.01,
        residual_threshold_at_step=0.05,
    )
    reasons: list[str] = []
    args = (mlp(linear_spec(3)), X, _iq(1.0), estimated, _at_init(True), True, None)
    v = decide(*args, path, reasons, "proven", 0.5)
    assert v == ("certified", "rigorous")
    assert "after the estimated closure at w0" in reasons[1]
    unchecked = path.model_copy(update={"bound_held_after": None})
    assert decide(*args, unchecked, [], "proven", 0.5) == ("certified", "estimated")


def test_pl_eps_closure_reason_names_the_path_length_bound() -> None:
    eps = Closure("rigorous", "PL*_eps path length", 1.0, 2.0, 0.1, 1.0, 0.9)
    reasons: list[str] = []
    v = decide(
        mlp(linear_spec(3)),
        X,
        _iq(1.0),
        eps,
        _at_init(True),
        True,
        None,
        _no_path(),
        reasons,
        "proven",
        0.5,
    )
    assert v == ("certified", "rigorous") and "path-length bound" in reasons[0]


def test_tied_model_is_told_why_it_gets_no_proven_bound() -> None:
    from tests.plcore.audit.family import tied_mlp

    notes = model_notes(tied_mlp("tanh", seed=0), torch.zeros(2, 1))
    assert any("rigorous tier refused" in n and "shared" in n for n in notes)
    assert not any("refused" in n for n in model_notes(mlp(linear_spec(3)), torch.zeros(2, 1)))
