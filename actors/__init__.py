"""The running system: stores (Redis, SQL, the audit spool), settings, and the Ray actors."""
