"""The HTML report page: sections, numbers, escaping, self-containment, and a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plcore.report.html import render_html
from plcore.report.html_text import NA, fmt_number, fmt_rate, meaning_sentences
from plcore.report.schema import InitClosure, ParameterEntry, Report
from tests.conftest import require_system_tool, run_chromium
from tests.plcore.report.sample_reports import XSS, full_report, minimal_report, path_report
from tests.plcore.report.test_plots import png_size

HEADINGS = [
    "Verdict",
    "What this means",
    "Plots",
    "Problem",
    "Parameters",
    "Constants on the ball",
    "Quantities at initialisation",
    "Gradient descent",
    "Planned learning rate",
    "SGD",
    "Checking run",
    "Path certificate",
    "Closure at initialisation",
    "Width extrapolation",
    "PL*_ε",
    "Conventions",
    "Provenance",
]


@pytest.fixture(scope="module")
def full_page() -> str:
    """The full sample report rendered once (the figures make rendering take about a second)."""
    return render_html(full_report())


def _headings(page: str) -> list[str]:
    return re.findall(r"<h[23]>(.*?)</h[23]>", page)


def _path_only_report() -> Report:
    """Does not close at w0, but closes from step 400 of the checking run."""
    report = full_report()
    at_init = InitClosure(
        closes=False,
        failing_inequality="R(rho) <= rho",
        required_radius=3.2,
        allowed_radius=1.06,
        residual_norm=5.0,
        residual_threshold=2.1,
        factor=2.381,
    )
    constants = report.constants.model_copy(update={"radius_closes": False})
    return report.model_copy(update={"at_init": at_init, "constants": constants})


def test_every_section_heading_is_present_in_order(full_page: str) -> None:
    assert _headings(full_page) == HEADINGS
    assert _headings(render_html(minimal_report())) == HEADINGS


def test_verdict_comes_first_with_badge_tier_and_reasons(full_page: str) -> None:
    page = full_page
    body = page[page.index("<main>") :]
    assert body.index('class="badge verdict-certified"') < body.index('id="meaning"')
    assert "estimated: sampled constants" in body
    assert "<li>the PL* radius R = 0.82 closes inside the search ball rho = 0.9</li>" in body


def test_numbers_are_shown_to_four_significant_digits(full_page: str) -> None:
    page = full_page
    for text in ("0.01142", "0.3654", "2135", "29495", "82433", "0.8234", "1.25e-05", "1288"):
        assert f">{text}<" in page, text
    assert "0.011420000" not in page
    assert "201 of the 2001 iterates stored" in page
    assert "per-sample smoothness at the probes" in page
    assert "Full checks along the run" in page
    assert ">0.01151<" in page and "used from step 400" in page


def test_number_formatting_of_edge_values() -> None:
    assert fmt_number(1234567.0) == "1.235e+06"
    assert fmt_number(7) == "7"
    assert fmt_number(None) == NA
    assert fmt_number(float("inf")) == NA
    assert fmt_number(float("nan")) == NA
    assert 'title="not available"' in NA


def test_rates_near_one_keep_their_distance_from_one() -> None:
    assert fmt_rate(1 - 3.2e-9) == "1 − 3.2e-09"
    assert fmt_rate(0.5) == "0.5"
    assert fmt_rate(1.0) == "1"
    assert fmt_rate(None) == "n/a"


def test_missing_values_render_as_dash_with_tooltip() -> None:
    page = render_html(minimal_report())
    assert page.count(NA) > 10
    assert "No checking run was made." in page
    assert "No mini-batch sizes were requested." in page
    assert "No data to plot." in page


def test_user_strings_are_escaped_everywhere() -> None:
    report = full_report(description=XSS)
    problem = report.problem.model_copy(update={"dataset_name": XSS})
    provenance = report.provenance.model_copy(update={"options": {"note": XSS}, "budget": XSS})
    mu = report.constants.mu.model_copy(update={"method": XSS})
    constants = report.constants.model_copy(update={"mu": mu})
    report = report.model_copy(
        update={
            "problem": problem,
            "provenance": provenance,
            "constants": constants,
            "reasons": [XSS],
            "conventions": {XSS: XSS},
        }
    )
    page = render_html(report)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 7


def test_page_is_self_contained(full_page: str) -> None:
    page = full_page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 5
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_embedded_plots_are_valid_pngs_with_captions(full_page: str) -> None:
    page = full_page
    for uri in re.findall(r'src="([^"]*)"', page):
        width, height = png_size(uri)
        assert width > 0 and height > 0
    assert page.count("<figcaption>") == 5


def test_meaning_states_the_rate_and_steps_when_certified_at_init() -> None:
    text = " ".join(meaning_sentences(full_report()))
    assert "step η = 0.01142 on the sum loss" in text
    assert "η = 0.3654 on the mean squared error" in text
    assert "L_t ≤ (1 − 0.0004684)^t · L_0" in text
    assert "within 29495 steps" in text
    assert "estimates from sampled points" in text


def test_meaning_explains_a_path_certificate() -> None:
    report = _path_only_report()
    text = " ".join(meaning_sentences(report))
    assert "does not apply at the initial weights" in text
    assert "‖r₀‖ = 5 is 2.381 times the threshold r* = 2.1" in text
    assert "at step t* = 400 of the checking run" in text
    assert "rate L_t ≤ (1 − 0.0005)^(t − t*)" in text


def test_meaning_explains_under_parameterization() -> None:
    text = " ".join(meaning_sentences(minimal_report()))
    assert "fewer parameters (m = 65) than equations (N = n·k = 200)" in text
    assert "proven bounds" in text


def test_meaning_of_an_inconclusive_report_names_the_failing_closure() -> None:
    base = _path_only_report()
    report = base.model_copy(
        update={
            "verdict": "inconclusive",
            "path": base.path.model_copy(
                update={"certified_from_step": None, "steps_needed_estimate": 900}
            ),
        }
    )
    text = " ".join(meaning_sentences(report))
    assert "neither proves nor refutes" in text
    assert "about 900 steps" in text
    assert "PL*_ε" in text


def test_meaning_of_not_certified_when_the_residual_is_too_large() -> None:
    base = _path_only_report()
    report = base.model_copy(
        update={
            "verdict": "not_certified",
            "path": base.path.model_copy(
                update={"certified_from_step": None, "steps_needed_estimate": 134352}
            ),
            # a PL*_eps at the initial loss says nothing and is left out of the text
            "pl_eps": base.pl_eps.model_copy(update={"eps": base.initial.loss})
            if base.pl_eps
            else None,
        }
    )
    text = " ".join(meaning_sentences(report))
    assert "does not apply at the initial weights w₀ because the initial residual" in text
    assert "Along the checking run of 2000 steps it never started to apply" in text
    assert "about 134352 steps" in text
    assert "not certified" in text
    assert "PL*_ε" not in text


def test_nonsmooth_models_are_flagged_as_heuristic() -> None:
    report = full_report()
    report = report.model_copy(
        update={"problem": report.problem.model_copy(update={"smooth": False})}
    )
    assert "heuristic" in " ".join(meaning_sentences(report))


@pytest.mark.slow
def test_report_renders_in_headless_chromium_without_console_errors(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    require_system_tool("chromium", "renders the HTML report")
    page = tmp_path / "report.html"
    page.write_text(render_html(full_report(description=XSS)), encoding="utf-8")
    url = page.resolve().as_uri()
    shot = artifacts_dir / "report.png"
    shot.unlink(missing_ok=True)

    dom = run_chromium(
        "--enable-logging=stderr", "--v=0", "--dump-dom", url, profile=tmp_path / "p1"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "badge verdict-certified" in dom.stdout
    assert ">Certified<" in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
    assert "Uncaught" not in dom.stderr
    assert "ERROR:CONSOLE" not in dom.stderr

    run = run_chromium(
        f"--screenshot={shot}", "--window-size=1280,3000", url, profile=tmp_path / "p2"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    width, height = png_size("data:image/png;base64," + _b64(shot.read_bytes()))
    assert (width, height) == (1280, 3000)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


@pytest.fixture(scope="module")
def path_page() -> str:
    return render_html(path_report())


def _row(page: str, label: str) -> str:
    """The HTML of the table row whose first cell is ``label``."""
    m = re.search(r"<tr><td>" + re.escape(label) + r"</td>(.*?)</tr>", page)
    assert m is not None, label
    return m.group(1)


def test_plots_come_right_after_the_verdict_and_its_meaning(full_page: str) -> None:
    assert full_page.index('id="meaning"') < full_page.index('id="plots"')
    assert full_page.index('id="plots"') < full_page.index('id="problem"')


def test_path_certificate_rows_show_the_quantities_at_step_t_star(path_page: str) -> None:
    expected = {
        "Certified from step t*": "166",
        "Residual ‖r(w_t*)‖ at t*": "0.005835",
        "Threshold r*(w_t*) at t*": "0.005996",
        "λ_min(K(w_t*))": "0.01267",
        "‖J(w_t*)‖₂": "0.8076",
        "β_F on the ball around w_t*": "0.02086",
        "Ball radius ρ* at t*": "1.746",
        "μ from t*": "0.005796",
        "Full checks along the run": "10",
    }
    for label, value in expected.items():
        assert f">{value}<" in _row(path_page, label), label
    assert "sampled (Hessian norms)" in _row(path_page, "β_F on the ball around w_t*")


def test_closure_at_init_shows_the_beta_behind_r_star_and_the_sampled_alternative(
    path_page: str,
) -> None:
    row = _row(path_page, "β_F behind r*")
    assert ">0.08555<" in row and "proven (analytic bound)" in row
    assert ">0.004594<" in _row(path_page, "Threshold r* with the sampled β_F")
    assert ">921.1<" in _row(path_page, "Closure factor with the sampled β_F")
    assert ">626.1<" in _row(path_page, "Needed radius 2 ‖J(w₀)‖ ‖r₀‖ / λ_min(K(w₀))")


def test_closure_without_a_proven_beta_shows_dashes_for_the_sampled_alternative(
    full_page: str,
) -> None:
    assert NA in _row(full_page, "Threshold r* with the sampled β_F")
    assert "estimated (sampled)" in _row(full_page, "β_F behind r*")


def test_checking_run_shows_the_switch_and_the_pl_ratios(path_page: str) -> None:
    switch = _row(path_page, "Step size from the switch on")
    assert ">1.404<" in switch and "used from step 166" in switch
    assert ">0.078, 0.022<" in _row(path_page, "PL ratio ‖∇L‖² / (2 L): first, last")
    smallest = _row(path_page, "Smallest PL ratio over the run")
    assert ">0.0201<" in smallest and "μ estimate 0.009052" in smallest
    assert "checked only when the certificate closes at w₀" in _row(
        path_page, "Bound held at every step"
    )


def test_gd_predictions_are_flagged_when_the_certificate_does_not_close_at_init(
    full_page: str, path_page: str
) -> None:
    warning = "Not certified from w₀."
    assert warning in path_page
    assert "from step t* = 166" in path_page
    assert warning not in full_page


def test_pl_eps_and_sgd_rows_show_their_new_fields(full_page: str, path_page: str) -> None:
    section = full_page[full_page.index('id="pl-eps"') :]
    assert ">0.9<" in _row(section, "Ball radius ρ")
    assert ">0.041<" in _row(section, "μ on that ball")
    assert ">0.0114<" in _row(section, "Step size")
    assert ">estimated<" in _row(section, "Tier")
    assert "certifies almost nothing" in path_page
    assert "certifies almost nothing" not in full_page
    assert "per-sample smoothness at the probes" in full_page


def test_a_row_without_notes_lets_its_value_span_the_notes_column(full_page: str) -> None:
    assert "<td class='val' colspan='2'>" in _row(full_page, "Method")


def test_meaning_of_a_run_certificate_leads_with_the_conclusion() -> None:
    sentences = meaning_sentences(path_report())
    assert sentences[0].startswith("Gradient descent from these initial weights reaches zero")
    assert "η = 1.568 for the first 166 steps, then η = 1.404" in sentences[0]
    text = " ".join(sentences)
    assert "(loss 1.702e-05)" in text
    assert "the guarantee is for this run" in text


def test_sgd_rows_are_labelled_predictions_with_unverified_hypotheses() -> None:
    report = full_report()
    assert report.sgd and not any(s.hypotheses_verified for s in report.sgd)
    html = render_html(report)
    assert "A prediction whose hypotheses are not verified" in html
    verified = report.model_copy(
        update={"sgd": [s.model_copy(update={"hypotheses_verified": True}) for s in report.sgd]}
    )
    assert "hypotheses are not verified" not in render_html(verified)


def test_width_extrapolation_shows_its_tier_and_note() -> None:
    report = full_report()
    assert report.width_extrapolation is not None
    w = report.width_extrapolation.model_copy(update={"note": "estimated: NOTE-MARKER"})
    html = render_html(report.model_copy(update={"width_extrapolation": w}))
    assert "NOTE-MARKER" in html and ">estimated<" in html


def _parameters_html(page: str) -> str:
    return page[page.index('<section id="parameters">') : page.index('<section id="constants">')]


def test_parameters_section_lists_name_shape_count_and_marks_frozen(full_page: str) -> None:
    section = _parameters_html(full_page)
    report = full_report()
    for p in report.parameters:
        assert f"<code>{p.name}</code>" in section
        assert "×".join(str(s) for s in p.shape) in section
        assert f">{p.count}<" in section
    assert section.count("<tr class='frozen'>") == sum(not p.trainable for p in report.parameters)
    assert section.count(">trainable</span>") == sum(p.trainable for p in report.parameters)
    n_train = sum(p.count for p in report.parameters if p.trainable)
    assert f"{n_train} trainable entries" in section
    assert "<details>" not in section


def test_long_parameter_lists_collapse_after_twenty_rows_with_a_count() -> None:
    params = [
        ParameterEntry(name=f"p{i}<x>", shape=[3, i + 1], count=3 * (i + 1), trainable=i % 2 == 0)
        for i in range(27)
    ]
    page = render_html(full_report().model_copy(update={"parameters": params}))
    section = _parameters_html(page)
    shown, hidden = section.split("<details>")
    assert shown.count("<code>") == 20
    assert "7 more parameter tensors" in hidden
    assert hidden.count("<code>") == 7
    assert "p26&lt;x&gt;" in hidden and "<x>" not in section


def test_a_report_without_a_parameter_list_says_so() -> None:
    assert "No parameter list recorded." in render_html(minimal_report())
