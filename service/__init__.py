"""plcert's HTTP service, job store and command line (all I/O lives here and in ``worker``)."""
