-- Usage of each task's model calls (graphmesh.orchestrator.ai.usage.TaskUsage as JSON:
-- input_tokens, output_tokens and, where a price is known, cost_usd); NULL when the task
-- called no model. A run's usage is the sum over its tasks.
ALTER TABLE graphmesh_run_tasks ADD COLUMN usage jsonb;
