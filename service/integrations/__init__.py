"""Bridges from plcert reports to the tools users already run (optional extras)."""
