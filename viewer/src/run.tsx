// One run: its graph coloured live by task status, the selected task's details, the event
// timeline, and Cancel / Resume where the run allows them.
import { useEffect, useState } from "preact/hooks";
import { api, dateOf, problemOf, traceUrl, viewerConfig, type Problem, type ViewerConfig } from "./api";
import { RunStatus } from "./gen/graphmesh/v1/common_pb";
import { RunEventKind } from "./gen/graphmesh/v1/events_pb";
import type { Run } from "./gen/graphmesh/v1/orchestrator_pb";
import { count, durationBetween, formatDuration, formatTime, runStatusName, shortId } from "./format";
import {
  AGGREGATE_ABOVE,
  layoutGroups,
  layoutTasks,
  PROGRESSIVE_ABOVE,
  type Layout,
} from "./graph/layout";
import { GraphView } from "./graph/view";
import { metrics, useLiveRun, type LiveRun } from "./live";
import { Badge, ErrorBox, Loading } from "./ui";
import { GroupPanel, TaskPanel } from "./task";

const started = performance.now();

export function RunPage({ runId }: { runId: string }) {
  const live = useLiveRun(runId);
  const [selected, setSelected] = useState<string | null>(null);
  const [config, setConfig] = useState<ViewerConfig>({ traceUrlTemplate: null });
  useEffect(() => {
    viewerConfig().then(setConfig);
  }, []);
  const layout = useLayout(live.run);
  if (live.problem) {
    return (
      <section class="page">
        <h1>Run {shortId(runId)}</h1>
        <ErrorBox problem={live.problem} retry={live.reload} />
        <a href="#/runs">Back to the runs</a>
      </section>
    );
  }
  if (!live.run || !layout) return <Loading what="the run" />;
  const run = live.run;
  const box = layout.boxes.find((b) => b.id === selected) ?? null;
  return (
    <section class="page run-page">
      <RunHeader run={run} live={live} config={config} />
      {live.streamProblem && (
        <div class="notice">
          Live updates paused ({live.streamProblem.codeName}: {live.streamProblem.message}); reconnecting…
        </div>
      )}
      <div class="run-body">
        <div class="graph-pane">
          {layout.boxes.length === 0 ? (
            <div class="state empty">This run has no tasks.</div>
          ) : (
            <GraphView
              layout={layout}
              states={live.tasks}
              version={live.version}
              selected={selected}
              onSelect={setSelected}
              onDrawn={() => recordDraw(run, layout)}
            />
          )}
        </div>
        <aside class="side-pane">
          {box?.members ? (
            <GroupPanel members={box.members} title={`${box.label} · ${box.sub}`} tasks={live.tasks} onSelect={setSelected} />
          ) : selected ? (
            <TaskPanel run={run} taskId={selected} task={live.tasks.get(selected)} version={live.version} onClose={() => setSelected(null)} />
          ) : (
            <RunSummary run={run} live={live} />
          )}
        </aside>
      </div>
      <Timeline live={live} onSelect={setSelected} />
    </section>
  );
}

/** The run's drawing: task by task when small; grouped at once and then task by task
 * (laid out in a worker) when middling; grouped when big. */
function useLayout(run: Run | null): Layout | null {
  const [layout, setLayout] = useState<Layout | null>(null);
  useEffect(() => {
    if (!run) return;
    const tasks = (run.graph?.tasks ?? []).map((t) => ({ id: t.id, type: t.type }));
    const edges = (run.graph?.dataflows ?? []).map((d) => ({ source: d.sourceTask, target: d.targetTask }));
    if (tasks.length <= PROGRESSIVE_ABOVE) {
      setLayout(layoutTasks(tasks, edges));
      return;
    }
    const grouped = layoutGroups(tasks, edges);
    if (tasks.length > AGGREGATE_ABOVE) {
      setLayout(grouped);
      return;
    }
    setLayout({ ...grouped, provisional: true });
    const worker = new Worker(new URL("./graph/worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (event: MessageEvent<Layout>) => {
      setLayout(event.data);
      worker.terminate();
    };
    worker.postMessage({ tasks, edges });
    return () => worker.terminate();
  }, [run]);
  return layout;
}

function recordDraw(run: Run, layout: Layout) {
  requestAnimationFrame(() =>
    setTimeout(() => {
      const at = performance.now();
      const detail = layout.aggregated ? "groups" : "tasks";
      metrics.draws.push({ runId: run.runId, tasks: run.tasks.length, detail, at, ms: at - started });
    }),
  );
}

function RunHeader({ run, live, config }: { run: Run; live: LiveRun; config: ViewerConfig }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const status = live.status || run.status;
  const name = runStatusName(status);
  const act = async (action: () => Promise<unknown>, reload: boolean) => {
    setBusy(true);
    setProblem(null);
    try {
      await action();
      if (reload) live.reload();
    } catch (error) {
      setProblem(problemOf(error));
    } finally {
      setBusy(false);
    }
  };
  const counts = countStatuses(live);
  const trace = traceUrl(config, run.traceId);
  const startedAt = dateOf(run.startTime) ?? firstStart(live);
  const ended = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED].includes(status);
  return (
    <div class="run-head">
      <div class="run-title">
        <a href="#/runs" class="back">← Runs</a>
        <h1>
          Run <span class="mono">{shortId(run.runId)}</span>
        </h1>
        <Badge status={name} />
        <span class="run-status" data-run-status={name.toUpperCase()} />
      </div>
      <dl class="facts">
        <div><dt>Created</dt><dd>{formatTime(dateOf(run.createTime))}</dd></div>
        <div><dt>Duration</dt><dd>{formatDuration(durationBetween(startedAt, ended ? lastEnd(live) ?? dateOf(run.endTime) : null))}</dd></div>
        <div><dt>Tasks</dt><dd>{count(counts.COMPLETED)} done / {count(live.tasks.size)}{counts.FAILED ? ` · ${count(counts.FAILED)} failed` : ""}{counts.PROCESSING ? ` · ${count(counts.PROCESSING)} running` : ""}</dd></div>
        {Object.keys(run.labels).length > 0 && (
          <div><dt>Labels</dt><dd>{Object.entries(run.labels).map(([k, v]) => <span class="label" key={k}>{k}={v}</span>)}</dd></div>
        )}
        {trace && <div><dt>Trace</dt><dd><a href={trace} target="_blank" rel="noopener noreferrer">open trace ↗</a></dd></div>}
      </dl>
      <div class="actions">
        {(status === RunStatus.PENDING || status === RunStatus.RUNNING) && (
          <button type="button" class="danger" disabled={busy} onClick={() => act(() => api.cancelRun({ runId: run.runId, reason: "cancelled in the viewer" }), false)}>
            Cancel run
          </button>
        )}
        {(status === RunStatus.FAILED || status === RunStatus.CANCELLED) && (
          <button type="button" disabled={busy} onClick={() => act(() => api.resumeRun({ runId: run.runId }), true)}>
            Resume run
          </button>
        )}
      </div>
      {run.error?.message && <div class="run-error" role="alert">{run.error.message}</div>}
      {problem && <ErrorBox problem={problem} />}
    </div>
  );
}

function countStatuses(live: LiveRun): Record<string, number> {
  const counts: Record<string, number> = { COMPLETED: 0, FAILED: 0, PROCESSING: 0 };
  for (const task of live.tasks.values()) counts[task.status] = (counts[task.status] ?? 0) + 1;
  return counts;
}

function firstStart(live: LiveRun): Date | null {
  let first: Date | null = null;
  for (const t of live.tasks.values()) if (t.start && (!first || t.start < first)) first = t.start;
  return first;
}

function lastEnd(live: LiveRun): Date | null {
  let last: Date | null = null;
  for (const t of live.tasks.values()) if (t.end && (!last || t.end > last)) last = t.end;
  return last;
}

function tokens(input: number, output: number, cost: number | undefined): string {
  const text = `${count(input)} in + ${count(output)} out`;
  return cost === undefined ? text : `${text}, ~$${cost.toFixed(6)}`;
}

function RunSummary({ run, live }: { run: Run; live: LiveRun }) {
  const failed = [...live.tasks.entries()].filter(([, t]) => t.status === "FAILED").slice(0, 20);
  return (
    <div class="panel">
      <h2>About this run</h2>
      <p class="hint">Click a task in the graph for its inputs, output, error and timings.</p>
      <dl class="kv">
        <dt>Run id</dt><dd class="mono">{run.runId}</dd>
        {run.idempotencyKey && (<><dt>Idempotency key</dt><dd class="mono">{run.idempotencyKey}</dd></>)}
        <dt>Events</dt><dd>{count(Math.max(Number(run.lastSeq), live.eventCount))}</dd>
        {run.usage && (run.usage.inputTokens > 0 || run.usage.outputTokens > 0) && (
          <><dt>Tokens</dt><dd>{tokens(run.usage.inputTokens, run.usage.outputTokens, run.usage.costUsd)}</dd></>
        )}
      </dl>
      {failed.length > 0 && (
        <>
          <h3>Failed tasks</h3>
          <ul class="plain">
            {failed.map(([id, t]) => (
              <li key={id}><code>{id}</code> <span class="bad">{t.error || "failed"}</span></li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

const KIND_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(RunEventKind)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k.toLowerCase().replace(/_/g, " ")]),
);

function Timeline({ live, onSelect }: { live: LiveRun; onSelect: (id: string) => void }) {
  const [shown, setShown] = useState(100);
  const events = live.timeline.slice(-shown).reverse();
  return (
    <details class="timeline" open>
      <summary>
        Event timeline <span class="hint">({count(live.eventCount)} events{live.eventCount > live.timeline.length ? `, the last ${count(live.timeline.length)} kept` : ""})</span>
      </summary>
      {events.length === 0 ? (
        <p class="hint">No events yet{live.tasks.size > 1500 ? " since the page opened (a run this big is not replayed)" : ""}.</p>
      ) : (
        <table class="events">
          <tbody>
            {events.map((e) => (
              <tr key={String(e.seq)} class={`kind-${KIND_NAMES[e.kind]?.replace(/ /g, "-")}`}>
                <td class="mono">{String(e.seq)}</td>
                <td>{e.time ? new Date(Number(e.time.seconds) * 1000 + e.time.nanos / 1e6).toLocaleTimeString() : ""}</td>
                <td>{KIND_NAMES[e.kind]}</td>
                <td>{e.taskId && <a href="#" onClick={(ev) => { ev.preventDefault(); onSelect(e.taskId); }}>{e.taskId}</a>}</td>
                <td class="msg">{e.error?.message || e.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {live.timeline.length > shown && (
        <button type="button" class="link" onClick={() => setShown(shown + 200)}>Show older events</button>
      )}
    </details>
  );
}
