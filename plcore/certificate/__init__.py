"""The PL* certificate, one module per step (orchestrated by :func:`plcore.certification.certify`).

* :mod:`.budget`       effort presets (fast / standard / thorough)
* :mod:`.radius`       the radius search of THEORY.md section 3 (brackets of L_F, beta_F, mu)
* :mod:`.predict_gd`   GD step, rate, condition number, iterations, planned learning rate
* :mod:`.predict_sgd`  the derived SGD step, rate and radius (docs/theory.md)
* :mod:`.pl_eps`       the smallest loss level GD provably reaches inside a PL* ball
* :mod:`.checking_run` the GD (and SGD) run that checks the predictions
* :mod:`.path`         the certificate applied at iterates w_t of the checking run
* :mod:`.width`        width extrapolation of the closing factor for MLP specs
* :mod:`.verdict`      the verdict rules and the plain-language reasons
"""
