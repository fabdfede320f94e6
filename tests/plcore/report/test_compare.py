"""Ranking candidates: the order rules on variants of one real report, and the page."""

from __future__ import annotations

import pytest

from plcore import CertifyOptions, certify, load_dataset, load_model
from plcore.report.compare import Candidate, path_start_loss, predicted_losses, rank
from plcore.report.compare_html import render_comparison_html
from plcore.report.schema import Report

SPEC = {"type": "mlp", "input_dim": 2, "widths": [32], "output_dim": 1, "activation": "tanh"}
DATA = {
    "X": [[((3 * i) % 8) / 8 - 0.5, ((5 * i) % 8) / 8 - 0.5] for i in range(6)],
    "y": [((7 * i) % 8) / 8 - 0.5 for i in range(6)],
}


@pytest.fixture(scope="module")
def report() -> Report:
    return certify(load_model(SPEC), load_dataset(DATA), CertifyOptions(budget="fast"))


def _variant(report: Report, *, verdict: str, tier: str, rate: float, steps: int) -> Report:
    """The report with the figures a ranking reads set (certified at w0 when certified)."""
    gd = report.gd.model_copy(update={"rate": rate, "iterations_to_target": steps})
    constants = report.constants.model_copy(update={"radius_closes": verdict == "certified"})
    return report.model_copy(
        update={
            "verdict": verdict,
            "tier": tier,
            "gd": gd,
            "constants": constants,
            "at_init": None,
            "path": report.path.model_copy(update={"certified_from_step": None}),
        }
    )


def test_rigorous_before_estimated_before_uncertified_then_by_rate_and_steps(
    report: Report,
) -> None:
    cands = [
        Candidate(0, "slow rigorous", _variant(report, verdict="certified", tier="rigorous",
                                               rate=0.9, steps=50)),
        Candidate(1, "uncertified fast", _variant(report, verdict="not_certified",
                                                  tier="estimated", rate=0.1, steps=3)),
        Candidate(2, "fast estimated", _variant(report, verdict="certified", tier="estimated",
                                                rate=0.2, steps=5)),
        Candidate(3, "failed", None, status="failed", error="boom"),
        Candidate(4, "fast rigorous", _variant(report, verdict="certified", tier="rigorous",
                                               rate=0.5, steps=20)),
        Candidate(5, "same rate fewer steps", _variant(report, verdict="certified",
                                                       tier="rigorous", rate=0.5, steps=10)),
    ]  # fmt: skip
    ranking = rank(cands)
    assert [e.index for e in ranking] == [5, 4, 0, 2, 1, 3]
    assert [e.rank for e in ranking] == [1, 2, 3, 4, 5, 6]
    assert ranking[0].basis == "w0" and ranking[4].basis == "estimate"
    assert ranking[-1].error == "boom" and ranking[-1].rate is None
    assert ranking[0].model_sha256 == report.provenance.model_sha256


def test_the_figures_are_those_the_verdict_rests_on(report: Report) -> None:
    (entry,) = rank([Candidate(0, "m", report)])
    if report.verdict != "certified":
        assert entry.basis == "estimate" and entry.rate == report.gd.rate
    elif report.path.certified_from_step is not None and entry.basis == "path":
        t_star = report.path.certified_from_step
        assert entry.rate == report.path.rate
        assert entry.steps_to_target is not None and entry.steps_to_target >= t_star
        start = path_start_loss(report)
        assert start is not None
        # the predicted curve continues from L_t* at the path rate
        (at_t_star,) = predicted_losses(report, [t_star])
        assert at_t_star == pytest.approx(start)
    else:
        assert (entry.basis, entry.rate) == ("w0", report.gd.rate)


def test_the_page_is_self_contained_with_the_table_and_one_plot(report: Report) -> None:
    ranking = rank([
        Candidate(0, "<b>a</b>", report),
        Candidate(1, "b", _variant(report, verdict="certified", tier="rigorous", rate=0.5,
                                   steps=20)),
    ])  # fmt: skip
    page = render_comparison_html(ranking, {0: report, 1: report}, data_name="<data>")
    assert page.count("data:image/png;base64,") == 1
    assert "&lt;data&gt;" in page and "<data>" not in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("<tr>") == 3  # head + 2 models
