"""`plcert submit` (to be written)."""
