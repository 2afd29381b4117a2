"""The chaos and load suite: selfheal running under load while its providers, actors, stores
and API are broken on purpose, judged against the load generator's own log.

:mod:`.stack` starts the system under test, :mod:`.load` sends the clinical load,
:mod:`.faults` breaks things (and always undoes them), :mod:`.experiment` runs one
experiment and checks it with :mod:`.ledger`, :mod:`.timing` measures MTTD and MTTR,
:mod:`.prediction` asks the simulator for the same, and :mod:`.suite` lists the
experiments. ``make chaos`` (``benchmarks/chaos.py``) runs them and writes the report.
"""
