"""The report's ``timings``: wall seconds per stage, as certify reported the stages."""

from __future__ import annotations

import time

from plcore import CertifyOptions, certify
from plcore.certificate.timings import StageClock
from tests.plcore.certify_cases import mlp, ntk_tanh_spec, unit_sphere_data


def test_stage_keys_drop_the_step_detail() -> None:
    assert StageClock.key("hessian norm: restart 2/3, iteration 14") == "hessian norm"
    assert StageClock.key("probing ball rho=0.5: hessian norm: restart 1/1") == "radius search"
    assert StageClock.key("checking run (SGD): step 3/10") == "checking run (SGD)"


def test_timings_cover_every_reported_stage_and_add_up_to_the_run() -> None:
    seen: list[str] = []
    start = time.perf_counter()
    report = certify(
        mlp(ntk_tanh_spec(16, d=4)),
        unit_sphere_data(n=4, d=4),
        CertifyOptions(budget="fast", validation_steps=20),
        on_progress=lambda f, s: seen.append(StageClock.key(s)),
    )
    wall = time.perf_counter() - start
    assert set(report.timings) == set(seen)
    assert {"initial quantities", "hessian norm", "checking run", "report"} <= set(report.timings)
    assert all(v >= 0 for v in report.timings.values())
    # each time is rounded to the millisecond: the sum may exceed the wall by half a ms a stage
    assert sum(report.timings.values()) <= wall + 0.0005 * len(report.timings)
    assert sum(report.timings.values()) >= 0.8 * report.provenance.elapsed_s
