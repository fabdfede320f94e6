"""The certification report: schema (pydantic), HTML rendering and plots."""
