"""Durable runs: a run's state in SQLite or Postgres, its tasks as jobs of the queue, so a run
survives the process that started it.

``service`` (the RunService), ``store`` (the store seam) with ``postgres`` and ``sqlite``,
``scheduler`` and ``scheduler_state`` (what an event does to a locked run, by the run rules
of ``graph/progression.py``), ``plan`` (a graph's plan, cached), ``rows`` (the tables' rows),
``batch`` (writes gathered per transaction), ``worker``, ``execution``, ``dispatch``,
``inputs`` and ``sweep`` (running the tasks, and finishing what a dead worker left).
"""
