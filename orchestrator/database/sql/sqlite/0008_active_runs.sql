-- Quotas count a tenant's runs not yet ended (and their open tasks) on every CreateRun:
-- the ended runs, most of them, stay out of this index.
CREATE INDEX graphmesh_runs_active_idx ON graphmesh_runs (tenant)
    WHERE status IN ('PENDING', 'RUNNING', 'CANCELLING');
