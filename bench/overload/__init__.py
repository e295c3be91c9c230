"""
``python -m bench.overload``: the overload scenarios of issue 13, shown.

Each scenario drives the flaky server (a real subprocess on 127.0.0.1,
ephemeral port) with the open-loop load generator
(:func:`resilient_mcp._load.run_open_loop`), once per client
configuration, and records every request's end, latency and outcome, and
the adaptive limit over time.  ``nox -s overload`` runs them all and
writes PNG plots and a markdown/JSON summary.

The modules:

- ``_scenarios``: the scenarios and the client configurations (hedging
  off and on for the slow tail);
- ``_driver``: one run of one scenario with one configuration;
- ``_summary``: the time series and the numbers against the targets;
- ``_plot``: the PNG plots (the only module that imports matplotlib).
"""
