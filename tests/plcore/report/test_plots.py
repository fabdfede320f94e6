"""The report figures: valid PNG data URIs from report data, None when the data is missing."""

from __future__ import annotations

import base64
import struct

import pytest

from plcore.report.plots import (
    all_plots,
    distance_plot,
    loss_plot,
    pl_ratio_plot,
    probes_plot,
    spectrum_plot,
)
from plcore.report.plots_base import Plot, closes_at_init, recorded_steps
from plcore.report.schema import Report
from tests.plcore.report.sample_reports import full_report, minimal_report, path_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PREFIX = "data:image/png;base64,"


def png_size(data_uri: str) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a base64 PNG data URI (fails if not a PNG)."""
    assert data_uri.startswith(PREFIX)
    raw = base64.b64decode(data_uri[len(PREFIX) :], validate=True)
    assert raw[:8] == PNG_MAGIC
    assert raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return int(width), int(height)


@pytest.mark.parametrize(
    "fn", [loss_plot, pl_ratio_plot, distance_plot, spectrum_plot, probes_plot]
)
def test_each_plot_is_a_png_data_uri_for_a_full_report(fn: object) -> None:
    plot = fn(full_report())  # type: ignore[operator]
    assert isinstance(plot, Plot)
    width, height = png_size(plot.data_uri)
    assert width > 300 and height > 150
    assert plot.title and plot.caption


@pytest.mark.parametrize(
    "fn", [loss_plot, pl_ratio_plot, distance_plot, spectrum_plot, probes_plot]
)
def test_each_plot_is_none_when_its_data_is_missing(fn: object) -> None:
    assert fn(minimal_report()) is None  # type: ignore[operator]


def test_all_plots_lists_the_figures_in_page_order() -> None:
    assert [p.key for p in all_plots(full_report())] == [
        "loss",
        "pl-ratio",
        "distance",
        "spectrum",
        "probes",
    ]
    assert all_plots(minimal_report()) == []


def test_plots_are_pure_functions_of_the_report() -> None:
    report = full_report()
    before = report.model_dump()
    first = loss_plot(report)
    second = loss_plot(report)
    assert first is not None and second is not None
    assert first.data_uri == second.data_uri
    assert report.model_dump() == before


def test_loss_plot_is_none_when_no_loss_is_positive() -> None:
    report = full_report()
    assert report.validation is not None
    zero = report.model_copy(
        update={"validation": report.validation.model_copy(update={"losses": [0.0, 0.0]})}
    )
    assert loss_plot(zero) is None


def test_loss_plot_mentions_the_path_bound_only_when_the_path_certifies() -> None:
    report = full_report()
    with_path = loss_plot(report)
    no_path = loss_plot(
        report.model_copy(
            update={"path": report.path.model_copy(update={"certified_from_step": None})}
        )
    )
    assert with_path is not None and no_path is not None
    assert "t*" in with_path.caption
    assert "t*" not in no_path.caption
    assert with_path.data_uri != no_path.data_uri


def test_spectrum_plot_counts_eigenvalues_a_log_axis_cannot_show() -> None:
    report = full_report()
    spectrum = [0.0, -1e-14, *report.initial.spectrum]
    singular = report.model_copy(
        update={"initial": report.initial.model_copy(update={"spectrum": spectrum})}
    )
    plot = spectrum_plot(singular)
    assert plot is not None
    assert "2 eigenvalue(s)" in plot.caption
    assert f"({len(spectrum)} eigenvalues)" in plot.caption


def test_spectrum_plot_is_none_for_an_all_zero_spectrum() -> None:
    report = minimal_report()
    zero = report.model_copy(
        update={"initial": report.initial.model_copy(update={"spectrum": [0.0, 0.0]})}
    )
    assert spectrum_plot(zero) is None


def test_plots_skip_non_finite_values_instead_of_failing() -> None:
    report = full_report()
    assert report.validation is not None
    losses = list(report.validation.losses)
    losses[3] = float("nan")
    losses[5] = float("inf")
    distances = list(report.validation.distances)
    distances[2] = float("nan")
    bad: Report = report.model_copy(
        update={
            "validation": report.validation.model_copy(
                update={"losses": losses, "distances": distances}
            )
        }
    )
    loss, dist = loss_plot(bad), distance_plot(bad)
    assert loss is not None and dist is not None
    png_size(loss.data_uri)
    png_size(dist.data_uri)


def test_recorded_steps_place_downsampled_points_at_their_step() -> None:
    assert recorded_steps([0, 10, 20], 3) == [0, 10, 20]
    assert recorded_steps([], 3) == [0, 1, 2]
    assert recorded_steps([0, 10], 3) == [0, 1, 2]  # a mismatched list is not trusted


def test_loss_plot_anchors_the_path_bound_at_the_residual_of_step_t_star() -> None:
    report = full_report()
    anchored = loss_plot(report)
    moved = loss_plot(
        report.model_copy(update={"path": report.path.model_copy(update={"residual_at_step": 0.5})})
    )
    assert anchored is not None and moved is not None
    assert anchored.data_uri != moved.data_uri


def _with_ratios(report: Report, ratios: list[float | None]) -> Report:
    assert report.validation is not None
    return report.model_copy(
        update={"validation": report.validation.model_copy(update={"pl_ratios": ratios})}
    )


def test_pl_ratio_plot_says_the_ratio_stays_above_mu_inside_the_ball() -> None:
    plot = pl_ratio_plot(full_report())
    assert plot is not None
    assert "Inside the ball (201 stored steps) the smallest ratio is 0.046, above μ = 0.041" in (
        plot.caption
    )
    assert "consistent with the certificate" in plot.caption


def test_pl_ratio_plot_flags_steps_inside_the_ball_below_the_mu_estimate() -> None:
    report = full_report()
    assert report.validation is not None
    ratios: list[float | None] = list(report.validation.pl_ratios)
    ratios[5] = 0.039  # below the estimate 0.041, above the proven bound 0.0365
    low = pl_ratio_plot(_with_ratios(report, ratios))
    assert low is not None
    assert "1 stored step(s) inside the ball fall below the sampled μ estimate" in low.caption
    ratios[6] = 0.03  # below the proven bound too
    lower = pl_ratio_plot(_with_ratios(report, ratios))
    assert lower is not None
    assert "1 stored step(s) inside the ball fall below the proven lower bound" in lower.caption


def test_pl_ratio_plot_counts_only_the_steps_inside_the_ball() -> None:
    plot = pl_ratio_plot(path_report())
    assert plot is not None
    # distances 19 (1 - 0.95^t) leave rho = 1.596 after step 1
    assert "Inside the ball (2 stored steps)" in plot.caption
    assert "From t* = 166 the path certificate's μ = 0.005796 applies" in plot.caption


def test_pl_ratio_plot_without_a_ball_marks_no_step_inside() -> None:
    report = path_report()
    constants = report.constants.model_copy(update={"search_radius": None})
    plot = pl_ratio_plot(report.model_copy(update={"constants": constants}))
    assert plot is not None
    assert "no step is marked as inside it" in plot.caption


def test_pl_ratio_plot_is_none_without_a_positive_ratio() -> None:
    assert pl_ratio_plot(_with_ratios(full_report(), [None, 0.0])) is None


def test_loss_plot_draws_no_bound_from_step_zero_when_the_certificate_does_not_close_there() -> (
    None
):
    report = path_report()
    assert not closes_at_init(report)
    assert closes_at_init(full_report())
    plot = loss_plot(report)
    assert plot is not None
    assert "No bound is drawn from step 0" in plot.caption
    assert "certified linear rate from w₀" not in plot.caption
    assert "path certificate's bound from step t* = 166" in plot.caption


def test_loss_plot_marks_the_step_size_switch() -> None:
    report = path_report()
    plot = loss_plot(report)
    assert plot is not None
    assert "From step 166 on, the run used the path certificate's step size η = 1.404" in (
        plot.caption
    )
    assert "instead of η = 1.568" in plot.caption
    assert report.validation is not None
    unswitched = report.model_copy(
        update={
            "validation": report.validation.model_copy(
                update={"step_size_switched_at": None, "step_size_after_switch": None}
            )
        }
    )
    other = loss_plot(unswitched)
    assert other is not None
    assert "From step" not in other.caption
    assert other.data_uri != plot.data_uri


def test_plots_place_points_at_their_recorded_steps() -> None:
    report = full_report()
    assert report.validation is not None
    dense = report.model_copy(
        update={"validation": report.validation.model_copy(update={"recorded_steps": []})}
    )
    for fn in (loss_plot, pl_ratio_plot, distance_plot):
        a, b = fn(report), fn(dense)
        assert a is not None and b is not None
        assert a.data_uri != b.data_uri, fn.__name__
