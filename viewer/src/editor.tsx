// A graph's JSON in an editor, checked by the server as you type (ValidateGraph), its
// violations shown on the nodes of the drawing; save it, see its Python builder code, or
// run it.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, isUnauthenticated, needToken, problemOf, type Problem } from "./api";
import type { Graph } from "./gen/graphmesh/v1/common_pb";
import type { GraphViolation } from "./gen/graphmesh/v1/orchestrator_pb";
import { layoutGraph } from "./graph/layout";
import { GraphView, type Marks } from "./graph/view";
import { go, graphHref, runHref } from "./router";
import { ErrorBox, Loading } from "./ui";

const STARTER = {
  tasks: [
    { id: "split", type: "DocumentSplitterTask", defaults: { text: "First paragraph.\n\nSecond paragraph." } },
    { id: "log", type: "DebugLogTask" },
  ],
  dataflows: [{ source_task: "split", source_port: "paragraphs", target_task: "log", target_port: "message" }],
};

type Check = { graph: Graph | null; violations: GraphViolation[]; problem: Problem | null; checking: boolean };

export function GraphEditorPage({ graphId }: { graphId: string | null }) {
  const [text, setText] = useState<string | null>(graphId ? null : JSON.stringify(STARTER, null, 2));
  const [name, setName] = useState(graphId ? "" : "untitled");
  const [loadProblem, setLoadProblem] = useState<Problem | null>(null);
  useEffect(() => {
    if (!graphId) return;
    api
      .getGraph({ graphId })
      .then(({ graph }) => {
        setName(graph?.name ?? "");
        setText(JSON.stringify(toJson(graph?.graph), null, 2));
      })
      .catch((error) => {
        const found = problemOf(error);
        if (isUnauthenticated(found)) needToken();
        setLoadProblem(found);
      });
  }, [graphId]);
  if (loadProblem) return <section class="page"><ErrorBox problem={loadProblem} /></section>;
  if (text === null) return <Loading what="the graph" />;
  return <Editor graphId={graphId} text={text} setText={setText} name={name} setName={setName} />;
}

function Editor(props: { graphId: string | null; text: string; setText: (t: string) => void; name: string; setName: (n: string) => void }) {
  const { text } = props;
  const check = useCheck(text);
  const [tab, setTab] = useState<"graph" | "python">("graph");
  const [action, setAction] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<string | null>(null);
  const layout = useMemo(() => {
    const graph = check.graph;
    if (!graph) return null;
    return layoutGraph(
      graph.tasks.map((t) => ({ id: t.id, type: t.type })),
      graph.dataflows.map((d) => ({ source: d.sourceTask, target: d.targetTask })),
    );
  }, [check.graph]);
  const marks = useMemo(() => marksOf(check.violations, action), [check.violations, action]);
  const perform = async (work: () => Promise<void>) => {
    setBusy(true);
    setAction(null);
    try {
      await work();
    } catch (error) {
      setAction(problemOf(error));
    } finally {
      setBusy(false);
    }
  };
  const run = () =>
    perform(async () => {
      const { run } = await api.createRun({ graphSource: { case: "graphJson", value: text }, labels: { source: "viewer" } });
      if (run) go(runHref(run.runId));
    });
  const save = () =>
    perform(async () => {
      const { graph } = await api.saveGraph({
        graphId: props.graphId ?? "",
        name: props.name,
        graphSource: { case: "graphJson", value: text },
      });
      if (graph && graph.graphId !== props.graphId) go(graphHref(graph.graphId));
    });
  return (
    <section class="page editor-page">
      <div class="page-head">
        <a href="#/graphs" class="back">← Graphs</a>
        <input class="name" aria-label="graph name" value={props.name} onInput={(e) => props.setName((e.target as HTMLInputElement).value)} />
        <span class={`check ${check.checking ? "busy" : check.problem || check.violations.length ? "bad" : "ok"}`} data-valid={!check.checking && !check.problem && !check.violations.length ? "true" : "false"}>
          {check.checking ? "checking…" : check.problem ? "cannot be read" : check.violations.length ? `${check.violations.length} problem(s)` : "valid"}
        </span>
        <span class="spacer" />
        <button type="button" disabled={busy} onClick={save}>Save</button>
        <button type="button" class="primary" disabled={busy} onClick={run}>Run</button>
      </div>
      {action && <ErrorBox problem={action} />}
      <div class="editor-body">
        <div class="code-pane">
          <textarea
            class="json-editor"
            spellcheck={false}
            aria-label="graph JSON"
            value={text}
            onInput={(e) => props.setText((e.target as HTMLTextAreaElement).value)}
            onKeyDown={(e) => {
              if (e.key !== "Tab") return;
              e.preventDefault();
              const area = e.target as HTMLTextAreaElement;
              area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
              props.setText(area.value);
            }}
          />
          {check.problem && <ErrorBox problem={check.problem} />}
          {check.violations.length > 0 && (
            <ul class="violations" aria-label="violations">
              {check.violations.map((v) => (
                <li key={v.field + v.description}>
                  <a href="#" onClick={(e) => { e.preventDefault(); setSelected(v.taskId || null); }}><code>{v.field}</code></a> {v.description}
                </li>
              ))}
            </ul>
          )}
        </div>
        <div class="preview-pane">
          <div class="tabs">
            <button type="button" class={tab === "graph" ? "active" : ""} onClick={() => setTab("graph")}>Graph</button>
            <button type="button" class={tab === "python" ? "active" : ""} onClick={() => setTab("python")}>Python</button>
          </div>
          {tab === "graph" && layout && (
            <GraphView layout={layout} states={new Map()} version={0} selected={selected} onSelect={setSelected} marks={marks} />
          )}
          {tab === "graph" && !layout && <div class="state empty">The drawing appears once the JSON can be read.</div>}
          {tab === "python" && <PythonCode text={text} />}
        </div>
      </div>
    </section>
  );
}

function useCheck(text: string): Check {
  const [check, setCheck] = useState<Check>({ graph: null, violations: [], problem: null, checking: true });
  const last = useRef<Graph | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    setCheck((c) => ({ ...c, checking: true }));
    const timer = setTimeout(() => {
      api
        .validateGraph({ graphSource: { case: "graphJson", value: text } }, { signal: abort.signal })
        .then((response) => {
          last.current = response.graph ?? last.current;
          setCheck({ graph: response.graph ?? null, violations: response.violations, problem: null, checking: false });
        })
        .catch((error) => {
          if (abort.signal.aborted) return;
          const found = problemOf(error);
          if (isUnauthenticated(found)) needToken();
          setCheck({ graph: last.current, violations: [], problem: found, checking: false });
        });
    }, 350);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [text]);
  return check;
}

/** Violations by task: ValidateGraph's ``task_id``, or a ``tasks[<id>]`` field of an error. */
function marksOf(violations: GraphViolation[], problem: Problem | null): Marks {
  const marks: Marks = new Map();
  const add = (taskId: string, text: string) => marks.set(taskId, [...(marks.get(taskId) ?? []), text]);
  for (const v of violations) if (v.taskId) add(v.taskId, v.description);
  for (const v of problem?.violations ?? []) {
    const match = /^tasks\[([^\]]+)\]/.exec(v.field);
    if (match) add(match[1], v.description);
  }
  return marks;
}

function PythonCode({ text }: { text: string }) {
  const [code, setCode] = useState<string | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    setCode(null);
    setProblem(null);
    api
      .exportCode({ graphSource: { case: "graphJson", value: text } }, { signal: abort.signal })
      .then((r) => setCode(r.pythonSource))
      .catch((error) => abort.signal.aborted || setProblem(problemOf(error)));
    return () => abort.abort();
  }, [text]);
  if (problem) return <ErrorBox problem={problem} />;
  if (code === null) return <Loading what="the Python code" />;
  return <pre class="python">{code}</pre>;
}

/** A graph message as the graph JSON the API reads (snake_case dataflow keys). */
function toJson(graph: Graph | undefined): unknown {
  return {
    tasks: (graph?.tasks ?? []).map((t) => ({
      id: t.id,
      type: t.type,
      ...(t.defaults && Object.keys(t.defaults).length ? { defaults: t.defaults } : {}),
      ...(t.config && Object.keys(t.config).length ? { config: t.config } : {}),
      ...(t.subgraph ? { subgraph: toJson(t.subgraph) } : {}),
    })),
    dataflows: (graph?.dataflows ?? []).map((d) => ({
      source_task: d.sourceTask,
      source_port: d.sourcePort,
      target_task: d.targetTask,
      target_port: d.targetPort,
    })),
  };
}
