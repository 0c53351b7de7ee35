"""Usage: what each account used of each model, metered per request and kept as daily rollups.

- ``rollups``: the rollup table's queries (add a batch of counts exactly once, report, prune).
- ``meter``: each worker's buffer of counts, flushed to the rollups every few seconds and on exit.
- ``quotas``: monthly quotas, counted in Redis by every worker and instance, else from the rollups.
- ``periods``: calendar months in UTC.

Nothing here knows of HTTP: the web layer (mlapi.web.metering) meters requests with it.
"""
