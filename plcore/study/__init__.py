"""Width and depth studies: how PL* emerges as the network widens (issue 12).

* :func:`study_width` / :func:`study_depth` -- every (size, seed) point certified (or its
  quantities computed), the log-log slope of ||H_F(w0)|| with a confidence interval, the kernel
  drift, lambda0 against its infinite-width value, mu, R and the verdicts.
* :func:`study_point` / :func:`assemble_study` -- the two halves, for running the points in
  parallel (the service's Celery group) and assembling the rows afterwards.
* :func:`plcore.report.study_html.render_study_html` -- the self-contained HTML page.
"""

from __future__ import annotations

from plcore.study.point import study_point
from plcore.study.study import assemble_study, plan_study, study_depth, study_width

__all__ = ["assemble_study", "plan_study", "study_depth", "study_point", "study_width"]
