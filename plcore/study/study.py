"""``study_width`` / ``study_depth``: how the PL* quantities change as the network widens
(or deepens), measured on the user's own architecture and data.

For every width W (or depth) and initialisation seed, :func:`plcore.study.point.study_point`
builds the spec at that size, certifies it (or, in ``"quantities"`` mode, computes only the
Hessian norm, the kernel at w0 and a GD run) and returns a row. :func:`assemble_study` then fits
log ||H_F(w0)|| against log W over every point (:func:`plcore.study.fit.fit_power_law`, slope
with a t-interval), fits the kernel drift the same way, finds the smallest width where every
seed was certified, adds the infinite-width lambda0 where a closed form exists, and states what
the theory expects (:mod:`plcore.study.theory`).

The points are independent: the service runs one Celery task per point and assembles the rows
in a final step; here they run one after the other, each in its slice of the progress.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from plcore.certificate.assemble import versions
from plcore.dataset import Dataset
from plcore.models.spec import describe_spec, validate_spec
from plcore.options import CertifyOptions
from plcore.progress import CancelCheck, Progress, ProgressCallback
from plcore.report.study_schema import (
    StudyKind,
    StudyMode,
    StudyProvenance,
    StudyResult,
    StudyRow,
)
from plcore.study.fit import fit_power_law
from plcore.study.point import study_point
from plcore.study.scaling import (
    MAX_STUDY_DEPTH,
    MAX_STUDY_WIDTH,
    base_width,
    check_seeds,
    check_values,
    hidden_depth,
    scaling_note,
    spec_at,
)
from plcore.study.theory import expected_slope, infinite_width_lambda_min, study_reasons


def plan_study(
    base_spec: Mapping[str, Any],
    kind: StudyKind,
    values: Sequence[int],
    seeds: Sequence[int] | None,
    fixed: int | None = None,
) -> tuple[list[int], list[int], list[tuple[int, int | None, int]]]:
    """(values, seeds, points): the checked values and seeds and every point as
    (width, depth, seed), values outermost. Every scaled spec is validated here, before any
    computation, so that a bad size fails at once.

    Raises:
        OptionsError: empty, duplicate-free list too long, out-of-range values or seeds.
        ModelSpecError: nothing to scale; a depth study of a layer list; a size over the caps.
    """
    base_width(base_spec)  # raises when nothing scales
    if seeds is None:
        seeds = [int(validate_spec(base_spec).seed)]
    seed_list = check_seeds(seeds)
    if kind == "width":
        vals = check_values(values, "widths", MAX_STUDY_WIDTH)
        if fixed is not None:
            check_values([fixed], "depth", MAX_STUDY_DEPTH)
        points = [(v, fixed, s) for v in vals for s in seed_list]
    else:
        if hidden_depth(base_spec) is None:
            from plcore.errors import ModelSpecError

            raise ModelSpecError("a depth study needs the MLP shorthand ('type': 'mlp')")
        vals = check_values(values, "depths", MAX_STUDY_DEPTH)
        width = base_width(base_spec) if fixed is None else fixed
        check_values([width], "width", MAX_STUDY_WIDTH)
        points = [(width, v, s) for v in vals for s in seed_list]
    for w, d, s in points:
        spec_at(base_spec, width=w, seed=s, depth=d)
    return vals, seed_list, points


def study_width(
    base_spec: Mapping[str, Any],
    data: Dataset,
    widths: Sequence[int],
    *,
    seeds: Sequence[int] | None = None,
    options: CertifyOptions | None = None,
    depth: int | None = None,
    mode: StudyMode = "certify",
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> StudyResult:
    """The width study of ``base_spec`` on ``data`` (see the module docstring).

    Args:
        base_spec: a JSON model spec (the MLP shorthand, or a layer list: see
            :mod:`plcore.study.scaling` for which layers scale).
        widths: hidden widths W (1..100000, at most 16; sorted, duplicates dropped).
        seeds: initialisation seeds of the spec (at most 8; default: the spec's own seed).
        options: the certification options of every point (budget, steps, device, ...).
        depth: hidden layers of every point (MLP shorthand; default the base spec's).
        mode: ``"certify"`` (a full certification per point) or ``"quantities"``.
        on_progress, should_cancel: as for :func:`plcore.certify` (each point reports in its
            slice of [0, 1], its stages prefixed "width W, seed S").

    Raises:
        OptionsError, ModelSpecError: bad widths, seeds or spec (before anything is computed).
        Cancelled: ``should_cancel`` answered True.
    """
    return _study(
        base_spec, data, "width", widths, seeds, options, depth, mode, on_progress, should_cancel
    )


def study_depth(
    base_spec: Mapping[str, Any],
    data: Dataset,
    depths: Sequence[int],
    *,
    seeds: Sequence[int] | None = None,
    options: CertifyOptions | None = None,
    width: int | None = None,
    mode: StudyMode = "certify",
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> StudyResult:
    """The depth study of an MLP spec: ``widths = [W] * depth`` for each depth (1..32), W the
    given ``width`` or the base spec's largest hidden width. Descriptive: the same rows and fits
    as :func:`study_width`, against the depth; no expected exponent."""
    return _study(
        base_spec, data, "depth", depths, seeds, options, width, mode, on_progress, should_cancel
    )


def _study(
    base_spec: Mapping[str, Any],
    data: Dataset,
    kind: StudyKind,
    values: Sequence[int],
    seeds: Sequence[int] | None,
    options: CertifyOptions | None,
    fixed: int | None,
    mode: StudyMode,
    on_progress: ProgressCallback | None,
    should_cancel: CancelCheck | None,
) -> StudyResult:
    options = options or CertifyOptions()
    vals, seed_list, points = plan_study(base_spec, kind, values, seeds, fixed)
    progress = Progress(on_progress, should_cancel)
    rows: list[StudyRow] = []
    for i, (w, d, s) in enumerate(points):
        span = progress.span(i / len(points), (i + 1) / len(points))
        label = f"width {w}, seed {s}" if kind == "width" else f"depth {d}, seed {s}"
        span.step(0.0, label)

        def report(fraction: float, stage: str, span: Progress = span, label: str = label) -> None:
            span.step(fraction, f"{label}, {stage}")

        rows.append(
            study_point(
                base_spec,
                data,
                width=w,
                seed=s,
                depth=d,
                options=options,
                mode=mode,
                on_progress=report,
                should_cancel=should_cancel,
            )
        )
    progress.step(1.0, "assembling the study")
    return assemble_study(
        base_spec, data, kind, mode, vals, seed_list, fixed, options, rows, progress.check
    )


def assemble_study(
    base_spec: Mapping[str, Any],
    data: Dataset,
    kind: StudyKind,
    mode: StudyMode,
    values: Sequence[int],
    seeds: Sequence[int],
    fixed: int | None,
    options: CertifyOptions,
    rows: Sequence[StudyRow],
    check: Any = None,
) -> StudyResult:
    """The study from its rows (in any order; sorted here by value and seed)."""
    rows = sorted(rows, key=lambda r: (r.width, r.depth or 0, seeds.index(r.seed)))
    x = [float(r.width if kind == "width" else (r.depth or 0)) for r in rows]
    slope = fit_power_law(x, [r.hessian_norm for r in rows])
    drift_slope = fit_power_law(x, [r.kernel_drift for r in rows]) if kind == "width" else None
    decreasing = drift_decreases(rows) if kind == "width" else None
    smallest = smallest_certified_width(rows) if mode == "certify" and kind == "width" else None
    lam_inf, lam_method = (None, "")
    if kind == "width":
        width0 = rows[0].width if rows else base_width(base_spec)
        spec0 = spec_at(base_spec, width=width0, seed=seeds[0], depth=fixed)
        lam_inf, lam_method = infinite_width_lambda_min(spec0, data.X)
    if check is not None:
        check()
    spec = validate_spec(base_spec).model_dump(mode="json")
    if kind == "width":
        widths, depths = list(values), [fixed if fixed is not None else hidden_depth(spec)]
    else:
        widths, depths = [rows[0].width if rows else base_width(spec)], list(values)
    return StudyResult(
        kind=kind,
        mode=mode,
        base_spec=spec,
        model_description=describe_spec(spec),
        widths=widths,
        depths=list(depths),
        seeds=list(seeds),
        scaled_layers=scaling_note(spec),
        options=options.model_dump(mode="json"),
        hessian_norm_slope=slope,
        expected_slope=expected_slope(spec) if kind == "width" else None,
        kernel_drift_slope=drift_slope,
        kernel_drift_decreasing=decreasing,
        lambda_min_infinite_width=lam_inf,
        infinite_width_method=lam_method,
        smallest_certified_width=smallest,
        reasons=study_reasons(spec, kind, mode, slope, rows, decreasing, smallest),
        rows=list(rows),
        provenance=StudyProvenance(
            data_sha256=data.sha256,
            versions=versions(),
            elapsed_s=round(sum(r.elapsed_s for r in rows), 3),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
    )


def drift_decreases(rows: Sequence[StudyRow]) -> bool | None:
    """True when the mean drift over seeds strictly decreases from each width to the next
    (None with fewer than two widths that have a drift)."""
    by: dict[int, list[float]] = {}
    for r in rows:
        if r.kernel_drift is not None:
            by.setdefault(r.width, []).append(r.kernel_drift)
    means = [float(np.mean(by[w])) for w in sorted(by)]
    if len(means) < 2:
        return None
    return all(b < a for a, b in itertools.pairwise(means))


def smallest_certified_width(rows: Sequence[StudyRow]) -> int | None:
    """The smallest width at which every seed's verdict is ``certified`` (None if none)."""
    by: dict[int, list[bool]] = {}
    for r in rows:
        by.setdefault(r.width, []).append(r.verdict == "certified")
    done = [w for w in sorted(by) if all(by[w])]
    return done[0] if done else None
