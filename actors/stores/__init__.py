"""Every external system behind one module each: the audit spool, SQL, Redis."""
