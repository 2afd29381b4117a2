"""The outer layer: the ``selfheal`` command line (and, with later issues, the Serve app)."""
