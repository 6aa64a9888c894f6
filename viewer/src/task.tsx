// The selected task: status, timings, attempts, error, its inputs (defaults and incoming
// dataflows), config, and its stored output (large values cut, with a way to see all).
// A group of a big run lists its tasks instead.
import type { JsonValue } from "@bufbuild/protobuf";
import { useEffect, useState } from "preact/hooks";
import { api, problemOf, type Problem } from "./api";
import type { Run } from "./gen/graphmesh/v1/orchestrator_pb";
import { formatDuration, formatTime } from "./format";
import { durationOf, type TaskLive } from "./live";
import { Badge, ErrorBox } from "./ui";

const CUT = 2000;

export function TaskPanel(props: { run: Run; taskId: string; task: TaskLive | undefined; version: number; onClose: () => void }) {
  const { run, taskId, task } = props;
  const spec = run.graph?.tasks.find((t) => t.id === taskId);
  const incoming = (run.graph?.dataflows ?? []).filter((d) => d.targetTask === taskId);
  const outgoing = (run.graph?.dataflows ?? []).filter((d) => d.sourceTask === taskId);
  const status = task?.status ?? "PENDING";
  return (
    <div class="panel task-panel" data-task-id={taskId}>
      <div class="panel-head">
        <h2 class="mono">{taskId}</h2>
        <Badge status={status} />
        <button type="button" class="link close" title="Close" onClick={props.onClose}>✕</button>
      </div>
      <div class="hint">{spec?.type}</div>
      {task?.error && (
        <div class="task-error" role="alert">
          <strong>Error</strong>
          <pre>{task.error}</pre>
        </div>
      )}
      <dl class="kv">
        <dt>Started</dt><dd>{formatTime(task?.start ?? null)}</dd>
        <dt>Ended</dt><dd>{formatTime(task?.end ?? null)}</dd>
        <dt>Duration</dt><dd>{task ? formatDuration(durationOf(task)) : "—"}</dd>
        <dt>Attempts</dt><dd>{task?.attempt ?? 0}{task?.cached ? " (from the cache)" : ""}</dd>
        <dt>Progress</dt><dd>{Math.round(status === "COMPLETED" ? 100 : task?.progress ?? 0)}%{task?.message ? ` · ${task.message}` : ""}</dd>
      </dl>
      <h3>Inputs</h3>
      {incoming.length === 0 && !hasKeys(spec?.defaults) && <p class="hint">None.</p>}
      {incoming.length > 0 && (
        <ul class="plain flows">
          {incoming.map((d) => (
            <li key={d.sourceTask + d.sourcePort + d.targetPort}>
              <code>{d.targetPort}</code> ← <code>{d.sourceTask}.{d.sourcePort}</code>
            </li>
          ))}
        </ul>
      )}
      {hasKeys(spec?.defaults) && <JsonBlock value={spec!.defaults!} label="defaults" />}
      {hasKeys(spec?.config) && (
        <>
          <h3>Config</h3>
          <JsonBlock value={spec!.config!} label="config" />
        </>
      )}
      <h3>Output</h3>
      <Output runId={run.runId} taskId={taskId} status={status} version={props.version} />
      {outgoing.length > 0 && (
        <>
          <h3>Feeds</h3>
          <ul class="plain flows">
            {outgoing.map((d) => (
              <li key={d.targetTask + d.sourcePort + d.targetPort}>
                <code>{d.sourcePort}</code> → <code>{d.targetTask}.{d.targetPort}</code>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

const hasKeys = (value: object | undefined) => Boolean(value && Object.keys(value).length);

function Output({ runId, taskId, status }: { runId: string; taskId: string; status: string; version: number }) {
  const [output, setOutput] = useState<JsonValue | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    setOutput(null);
    setProblem(null);
    if (status !== "COMPLETED") return;
    const abort = new AbortController();
    api
      .getTaskOutput({ runId, taskId }, { signal: abort.signal })
      .then((response) => setOutput((response.output ?? {}) as JsonValue))
      .catch((error) => abort.signal.aborted || setProblem(problemOf(error)));
    return () => abort.abort();
  }, [runId, taskId, status]);
  if (status !== "COMPLETED") return <p class="hint">Stored once the task completes.</p>;
  if (problem) return <ErrorBox problem={problem} />;
  if (output === null) return <p class="hint">Loading…</p>;
  return <JsonBlock value={output} label="output" />;
}

export function JsonBlock({ value, label }: { value: JsonValue; label: string }) {
  const [all, setAll] = useState(false);
  const text = JSON.stringify(value, null, 2);
  const cut = !all && text.length > CUT;
  return (
    <div class="json-block" data-label={label}>
      <pre>{cut ? text.slice(0, CUT) + "\n…" : text}</pre>
      {cut && (
        <button type="button" class="link" onClick={() => setAll(true)}>
          Show all ({(text.length / 1024).toFixed(1)} KB)
        </button>
      )}
    </div>
  );
}

export function GroupPanel(props: { title: string; members: string[]; tasks: Map<string, TaskLive>; onSelect: (id: string) => void }) {
  const [filter, setFilter] = useState("");
  const [shown, setShown] = useState(200);
  const matching = props.members.filter((id) => !filter || (props.tasks.get(id)?.status ?? "PENDING") === filter);
  return (
    <div class="panel">
      <h2>{props.title}</h2>
      <label>
        Status{" "}
        <select value={filter} onChange={(e) => setFilter((e.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          {["PENDING", "PROCESSING", "COMPLETED", "FAILED", "SKIPPED"].map((s) => (
            <option key={s} value={s}>{s.toLowerCase()}</option>
          ))}
        </select>
      </label>
      <ul class="plain members">
        {matching.slice(0, shown).map((id) => {
          const status = props.tasks.get(id)?.status ?? "PENDING";
          return (
            <li key={id}>
              <a href="#" onClick={(e) => { e.preventDefault(); props.onSelect(id); }}>{id}</a> <Badge status={status} />
            </li>
          );
        })}
      </ul>
      {matching.length > shown && (
        <button type="button" class="link" onClick={() => setShown(shown + 500)}>
          Show more ({(matching.length - shown).toLocaleString("en-US")} left)
        </button>
      )}
    </div>
  );
}
