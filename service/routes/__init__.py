"""HTTP routes: certifications (the /v1 API), health and metrics, documentation."""
