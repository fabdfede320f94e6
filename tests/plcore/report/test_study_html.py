"""The width-study page: sections, figures, escaping, and a render in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plcore import CertifyOptions
from plcore.report.study_html import render_study_html
from plcore.report.study_schema import StudyResult, StudyRow
from plcore.study import assemble_study
from tests.conftest import require_system_tool, run_chromium
from tests.plcore.study.conftest import sphere_data, tanh_mlp

XSS = "<script>alert(1)</script>"


def _row(width: int, seed: int, *, certify: bool) -> StudyRow:
    h = 2.0 * width**-0.5 * (1.1 if seed else 1.0)
    return StudyRow(
        width=width,
        depth=1,
        seed=seed,
        n_params=10 * width + 1,
        hessian_norm=h,
        hessian_norm_converged=True,
        lambda_min=0.05 + 1.0 / width,
        lambda_max=2.0,
        kernel_drift=1.0 / width,
        drift_steps=200,
        drift_step_size=0.3,
        initial_loss=2.0,
        final_loss=0.5,
        mu=0.04 if certify else None,
        radius=30.0 / width**0.5 if certify else None,
        verdict=("certified" if width >= 256 else "not_certified") if certify else None,
        tier="estimated" if certify else None,
        notes=[XSS] if width == 64 and seed == 0 else [],
    )


def synthetic_study(*, certify: bool = True) -> StudyResult:
    rows = [_row(w, s, certify=certify) for w in (64, 256, 1024) for s in (0, 1)]
    return assemble_study(
        tanh_mlp(),
        sphere_data(n=4),
        "width",
        "certify" if certify else "quantities",
        [64, 256, 1024],
        [0, 1],
        None,
        CertifyOptions(budget="fast"),
        rows,
    )


@pytest.fixture(scope="module")
def page() -> str:
    return render_study_html(synthetic_study())


def test_page_has_the_slope_the_sections_and_the_smallest_certified_width(page: str) -> None:
    for heading in ("Slope of the Hessian norm", "Plots", "Every point", "Method and provenance"):
        assert f"<h2>{heading}</h2>" in page
    assert "d log ||H_F(w0)|| / d log width = -0." in page
    assert "theory: -0.5" in page
    assert "Smallest certified width: <b>256</b>" in page
    assert page.count('<td class="verdict-cell v-certified">') == 4


def test_page_has_the_four_figures_as_data_uris_and_nothing_external(page: str) -> None:
    figures = re.findall(r'<figure id="plot-([a-z0-9-]+)"><img src="data:image/png;base64,', page)
    assert figures == ["hessian", "lambda0", "drift", "mu-radius"]
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_user_text_is_escaped(page: str) -> None:
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_quantities_mode_has_no_mu_plot_and_no_certified_width() -> None:
    html = render_study_html(synthetic_study(certify=False))
    assert 'id="plot-mu-radius"' not in html and "Smallest certified width" not in html


def test_study_page_renders_in_headless_chromium(tmp_path: Path, artifacts_dir: Path) -> None:
    require_system_tool("chromium", "renders the HTML study page")
    path = tmp_path / "study.html"
    path.write_text(render_study_html(synthetic_study()), encoding="utf-8")
    url = path.resolve().as_uri()
    dom = run_chromium(
        "--enable-logging=stderr", "--v=0", "--dump-dom", url, profile=tmp_path / "a"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Slope of the Hessian norm" in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
    assert "Uncaught" not in dom.stderr and "ERROR:CONSOLE" not in dom.stderr
    shot = artifacts_dir / "study.png"
    shot.unlink(missing_ok=True)
    run = run_chromium(
        f"--screenshot={shot}", "--window-size=1280,2400", url, profile=tmp_path / "b"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 10_000
