"""`plcert serve` (to be written)."""
