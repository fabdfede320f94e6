"""Hand-built reports for the rendering tests (realistic values; no computation behind them)."""

from __future__ import annotations

import math

from plcore.report.schema import (
    GD,
    Constants,
    InitClosure,
    Initial,
    LowerBracket,
    ParameterEntry,
    PathCertificate,
    PlannedLearningRate,
    PLEps,
    ProbePoint,
    Problem,
    Provenance,
    Report,
    SGDPrediction,
    UpperBracket,
    Validation,
    WidthExtrapolation,
)

XSS = "<script>alert(1)</script>"


def full_report(*, description: str = "MLP 64-256-256-1 tanh (ntk)") -> Report:
    """A certified report with every optional section filled in."""
    steps = 2000
    recorded = list(range(0, steps + 1, 10))  # the run is stored every 10th step
    L0 = 12.5
    rate_obs = 0.996
    losses = [L0 * rate_obs**t for t in recorded]
    distances = [0.8 * (1 - 0.9985**t) for t in recorded]
    spectrum = sorted(0.05 * 1.07**i for i in range(64))
    probes = [ProbePoint(source="center", distance=0.0, lambda_min=0.05, jacobian_norm=9.1)]
    probes += [
        ProbePoint(source="sphere", distance=0.9, lambda_min=0.047 + 0.0002 * i, jacobian_norm=9.2)
        for i in range(6)
    ]
    probes += [
        ProbePoint(source="path", distance=d, lambda_min=0.05 - 0.002 * d, jacobian_norm=9.1)
        for d in distances[::40]
    ]
    probes.append(
        ProbePoint(
            source="ascent_hessian",
            distance=0.9,
            lambda_min=0.044,
            jacobian_norm=9.3,
            hessian_norm=0.21,
        )
    )
    probes.append(
        ProbePoint(source="descent_lambda", distance=0.9, lambda_min=0.041, jacobian_norm=9.2)
    )
    return Report(
        verdict="certified",
        tier="estimated",
        reasons=[
            "the PL* radius R = 0.82 closes inside the search ball rho = 0.9",
            "constants are sampled estimates (no proven bound on beta_F for this model)",
        ],
        problem=Problem(
            n_samples=64,
            n_outputs=1,
            n_params=82_433,
            n_constraints=64,
            overparameterization_ratio=82_433 / 64,
            model_description=description,
            model_format="json",
            dataset_name="sklearn:digits?n=64",
            activations=["tanh"],
            smooth=True,
            output_activation=None,
        ),
        initial=Initial(
            loss=L0,
            residual_norm=math.sqrt(2 * L0),
            lambda_min=0.05,
            lambda_max=82.8,
            condition_number=1656.0,
            jacobian_norm=9.0995,
            hessian_norm=0.198,
            hessian_norm_converged=True,
            hessian_norm_spread=0.003,
            max_output_hessian_norm=0.051,
            kernel_method="structured",
            spectrum=spectrum,
        ),
        constants=Constants(
            L_F=UpperBracket(estimate=9.31, upper_bound=9.45, method="probes + perturbation"),
            beta_F=UpperBracket(estimate=0.21, upper_bound=None, method="power method at probes"),
            mu=LowerBracket(
                estimate=0.041, lower_bound=0.0365, method="(sqrt(lambda0)-beta rho)^2"
            ),
            mu_unnormalized=0.082,
            radius=0.8234,
            search_radius=0.9,
            radius_closes=True,
            radius_tier="estimated",
        ),
        gd=GD(
            step_size=0.01142,
            step_size_mse_mean=0.3654,
            kappa=2135.0,
            rate=1 - 1 / 2135.0,
            target_loss=1.25e-5,
            iterations_to_target=29_495,
            planned_learning_rate=PlannedLearningRate(
                learning_rate=0.1,
                convention="mse",
                step_size_sum=0.003125,
                safe=True,
                ratio_to_safe=0.2737,
                message="lr 0.1 (mse) is 0.27 of the certified-safe step",
            ),
        ),
        sgd=[
            SGDPrediction(
                batch_size=8,
                step_size=1.2e-4,
                rate=0.99993,
                radius=41.2,
                confidence=0.9,
                step_size_mse_mean=0.00384,
                iterations_to_target=190_000,
                smoothness=81.0,
                method="per-sample smoothness at the probes",
            ),
            SGDPrediction(
                batch_size=32,
                step_size=1.1e-4,
                rate=None,
                radius=None,
                confidence=0.9,
            ),
        ],
        validation=Validation(
            steps=steps,
            step_size=0.01142,
            losses=losses,
            bound_held=True,
            max_distance_from_init=max(distances),
            min_pl_ratio=0.046,
            radius=0.8234,
            first_violation_step=None,
            distances=distances,
            sgd_losses=[L0 * 0.999**t for t in recorded],
            sgd_batch_size=8,
            recorded_steps=recorded,
            step_size_switched_at=400,
            step_size_after_switch=0.01151,
            pl_ratios=[0.046 + 0.001 * i / len(recorded) for i in range(len(recorded))],
        ),
        path=PathCertificate(
            residual_threshold=2.1,
            certified_from_step=400,
            mu=0.044,
            radius=0.31,
            step_size=0.0115,
            rate=0.9995,
            residual_at_step=1.95,
            lambda_min_at_step=0.046,
            jacobian_norm_at_step=9.2,
            beta=0.2,
            ball_radius=0.35,
            residual_threshold_at_step=2.1,
            checked_steps=12,
            tier="estimated",
            steps_needed_estimate=None,
            bound_held_after=True,
            note="closes at step 400",
        ),
        at_init=InitClosure(
            closes=True,
            failing_inequality=None,
            required_radius=0.8234,
            allowed_radius=1.06,
            residual_norm=math.sqrt(2 * L0),
            residual_threshold=6.0,
            factor=0.8333,
            beta=0.2,
            beta_kind="estimated",
            estimated_residual_threshold=None,
            estimated_factor=None,
        ),
        width_extrapolation=WidthExtrapolation(
            widths=[64, 128, 256],
            factors=[3.1, 1.9, 0.83],
            slope=-0.95,
            width_to_close=210.0,
            method="log-log least squares over widths",
        ),
        pl_eps=PLEps(
            eps=1e-9,
            iterations=40_000,
            method="path probes",
            tier="estimated",
            radius=0.9,
            step_size=0.0114,
            rate=0.9995,
            mu=0.041,
        ),
        probes=probes,
        conventions={
            "loss": "L = 1/2 sum ||f(x_i) - y_i||^2 (sum, not mean)",
            "mu": "1/2-normalized PL*: 1/2 ||grad L||^2 >= mu L",
            "sgd": "derived in docs/theory.md, not printed in the paper",
        },
        provenance=Provenance(
            model_sha256="a" * 64,
            data_sha256="b" * 64,
            versions={"plcert": "0.1.0", "torch": "2.13.0"},
            device="cpu",
            seed=0,
            elapsed_s=3.21,
            budget="fast",
            options={"budget": "fast", "seed": 0},
            created_at="2025-01-01T00:00:00Z",
        ),
        parameters=[
            ParameterEntry(name="layers.0.weight", shape=[256, 64], count=16_384, trainable=False),
            ParameterEntry(name="layers.0.bias", shape=[256], count=256, trainable=False),
            ParameterEntry(name="layers.1.weight", shape=[256, 256], count=65_536, trainable=True),
            ParameterEntry(name="layers.1.bias", shape=[256], count=256, trainable=True),
            ParameterEntry(name="layers.2.weight", shape=[1, 256], count=256, trainable=True),
            ParameterEntry(name="layers.2.bias", shape=[1], count=1, trainable=True),
        ],
    )


def minimal_report(*, description: str = "Linear 64-1") -> Report:
    """A not-certified report with every optional section empty or None."""
    return Report(
        verdict="not_certified",
        tier="rigorous",
        reasons=["under-parameterized: m = 65 parameters < N = 200 constraints, so K is singular"],
        problem=Problem(
            n_samples=200,
            n_outputs=1,
            n_params=65,
            n_constraints=200,
            overparameterization_ratio=65 / 200,
            model_description=description,
        ),
        initial=Initial(
            loss=101.0,
            residual_norm=14.2,
            lambda_min=0.0,
            lambda_max=5000.0,
            condition_number=None,
            jacobian_norm=70.7,
            hessian_norm=None,
        ),
        constants=Constants(
            L_F=UpperBracket(estimate=None, upper_bound=None, method="not computed"),
            beta_F=UpperBracket(estimate=None, upper_bound=None, method="not computed"),
            mu=LowerBracket(estimate=0.0, lower_bound=None, method="rank"),
            radius=None,
            search_radius=None,
        ),
        gd=GD(
            step_size=None,
            step_size_mse_mean=None,
            kappa=None,
            rate=None,
            target_loss=None,
            iterations_to_target=None,
        ),
        validation=None,
        path=PathCertificate(residual_threshold=None, certified_from_step=None),
        conventions={},
        provenance=Provenance(
            model_sha256="c" * 64,
            data_sha256="d" * 64,
            versions={},
            device="cpu",
            seed=0,
            elapsed_s=0.1,
        ),
    )


def path_report() -> Report:
    """Certified along the run only: the certificate does not close at w0 (proven beta_F gives a
    tiny r*), the run leaves B(w0, rho) after a few steps, and the path certificate closes at
    t* = 166, where the run switched to the certified step (shaped like a real 32-512-1 run)."""
    base = full_report(description="MLP 32-512-1 tanh (ntk)")
    steps = 200
    recorded = list(range(steps + 1))
    losses = [8.954 * 0.93**t for t in recorded]
    distances = [19.0 * (1 - 0.95**t) for t in recorded]
    ratios: list[float | None] = [0.022 + 0.056 * 0.8**t for t in recorded]
    ratios[-1] = None  # a zero loss has no ratio
    validation = Validation(
        steps=steps,
        step_size=1.568,
        losses=losses,
        bound_held=None,
        max_distance_from_init=max(distances),
        min_pl_ratio=0.0201,
        radius=None,
        distances=distances,
        recorded_steps=recorded,
        pl_ratios=ratios,
        step_size_switched_at=166,
        step_size_after_switch=1.404,
    )
    constants = base.constants.model_copy(
        update={
            "L_F": UpperBracket(estimate=0.7413, upper_bound=None, method="probes"),
            "beta_F": UpperBracket(estimate=0.02086, upper_bound=None, method="probes"),
            "mu": LowerBracket(estimate=0.009052, lower_bound=None, method="probes"),
            "radius": 693.1,
            "search_radius": 1.596,
            "radius_closes": False,
            "radius_tier": None,
        }
    )
    path = PathCertificate(
        residual_threshold=0.00112,
        certified_from_step=166,
        mu=0.005796,
        radius=1.699,
        step_size=1.404,
        rate=0.9919,
        residual_at_step=0.005835,
        tier="estimated",
        bound_held_after=True,
        note="from step 166 the checking run used the certified step 1.404",
        lambda_min_at_step=0.01267,
        jacobian_norm_at_step=0.8076,
        beta=0.02086,
        ball_radius=1.746,
        residual_threshold_at_step=0.005996,
        checked_steps=10,
    )
    at_init = InitClosure(
        closes=False,
        failing_inequality="R(rho) <= rho fails on every ball",
        required_radius=626.1,
        allowed_radius=1.168,
        residual_norm=4.232,
        residual_threshold=0.00112,
        factor=3778.0,
        beta=0.08555,
        beta_kind="proven",
        estimated_residual_threshold=0.004594,
        estimated_factor=921.1,
    )
    pl_eps = PLEps(
        eps=8.953,
        iterations=1,
        method="path-length bound",
        tier="estimated",
        radius=4.517,
        step_size=1.278,
        rate=1 - 4.22e-5,
        mu=3.303e-5,
    )
    gd = base.gd.model_copy(update={"planned_learning_rate": None})
    return base.model_copy(
        update={
            "reasons": ["the PL* theorem does not apply at w0", "applies at step 166"],
            "initial": base.initial.model_copy(update={"loss": 8.954, "residual_norm": 4.232}),
            "constants": constants,
            "gd": gd,
            "sgd": [],
            "validation": validation,
            "path": path,
            "at_init": at_init,
            "pl_eps": pl_eps,
        }
    )
