"""`plcert certify` (to be written)."""
