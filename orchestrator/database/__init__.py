"""The engine's databases, apart from what is stored in them: the SQL of each dialect
(``sql/``: ordered migrations and named queries), the migrator (``migrations``), the
Postgres connection pool that fails fast through an outage (``pool``) and LISTEN/NOTIFY
wakeups (``listen``). The repositories (``storage/``), the job queue (``queue/``), the run
stores (``runs/durable/``) and the event outbox (``events/``) build on it.
"""
