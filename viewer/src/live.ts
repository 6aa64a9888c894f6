// A run's live state: loaded once (GetRun), then kept current from its event stream
// (WatchRun from the next seq), applied in batches once per animation frame. A broken
// stream is taken up again after the last event seen. Paint times of TASK_COMPLETED
// events are recorded on window.__graphmeshViewer for bench/viewer.py.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, isAbort, isUnauthenticated, needToken, problemOf, type Problem } from "./api";
import { RunStatus, TaskStatus } from "./gen/graphmesh/v1/common_pb";
import { RunEventKind, type RunEvent } from "./gen/graphmesh/v1/events_pb";
import type { Run } from "./gen/graphmesh/v1/orchestrator_pb";
import { Code } from "@connectrpc/connect";
import { taskStatusName } from "./format";
import type { TaskView } from "./graph/view";
import { AGGREGATE_ABOVE } from "./graph/layout";

export type TaskLive = TaskView & {
  message: string;
  error: string;
  start: Date | null;
  end: Date | null;
  attempt: number;
  cached: boolean;
};

export type Metrics = { paints: number[]; draws: { runId: string; tasks: number; detail: string; at: number; ms: number }[] };
declare global {
  interface Window {
    __graphmeshViewer?: Metrics;
  }
}
export const metrics = (window.__graphmeshViewer ??= { paints: [], draws: [] });

const TIMELINE_KEEP = 2000;
const ms = (date: Date | null) => (date ? date.getTime() : null);

export type LiveRun = {
  run: Run | null;
  problem: Problem | null;
  streamProblem: Problem | null;
  status: RunStatus;
  tasks: Map<string, TaskLive>;
  version: number;
  timeline: RunEvent[];
  eventCount: number;
  reload: () => void;
};

export function useLiveRun(runId: string): LiveRun {
  const [run, setRun] = useState<Run | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [streamProblem, setStreamProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState<RunStatus>(RunStatus.UNSPECIFIED);
  const [version, setVersion] = useState(0);
  const [generation, setGeneration] = useState(0);
  const tasks = useRef(new Map<string, TaskLive>());
  const timeline = useRef<RunEvent[]>([]);
  const eventCount = useRef(0);
  const painted = useRef<number[]>([]);

  useEffect(() => {
    const abort = new AbortController();
    const buffer: RunEvent[] = [];
    let frame = 0;
    let history = 0; // events up to this seq were already in GetRun's state: timeline only
    const flush = () => {
      frame = 0;
      const batch = buffer.splice(0);
      for (const event of batch) apply(event);
      const last = batch[batch.length - 1];
      if (last && Number(last.seq) > history) setStatus(last.runStatus);
      setVersion((n) => n + 1);
    };
    const apply = (event: RunEvent) => {
      eventCount.current += 1;
      timeline.current.push(event);
      if (timeline.current.length > TIMELINE_KEEP) timeline.current.splice(0, TIMELINE_KEEP / 2);
      if (Number(event.seq) <= history) return;
      if (!event.taskId || event.status === TaskStatus.UNSPECIFIED) return;
      const time = event.time ? new Date(Number(event.time.seconds) * 1000 + event.time.nanos / 1e6) : null;
      const task = tasks.current.get(event.taskId) ?? blankTask();
      task.status = taskStatusName(event.status);
      task.progress = event.kind === RunEventKind.TASK_COMPLETED ? 100 : event.progress;
      if (event.message) task.message = event.message;
      if (event.error?.message) task.error = event.error.message;
      if (event.kind === RunEventKind.TASK_STARTED) {
        task.start = time;
        task.end = null;
        task.error = "";
        task.attempt += 1;
      }
      if ([RunEventKind.TASK_COMPLETED, RunEventKind.TASK_FAILED, RunEventKind.TASK_ABORTED, RunEventKind.TASK_SKIPPED].includes(event.kind)) {
        task.end = time;
      }
      if (event.kind === RunEventKind.TASK_COMPLETED && time) painted.current.push(time.getTime());
      tasks.current.set(event.taskId, task);
    };
    const receive = (event: RunEvent) => {
      buffer.push(event);
      if (!frame) frame = requestAnimationFrame(flush);
    };
    (async () => {
      let loaded: Run;
      try {
        loaded = (await api.getRun({ runId }, { signal: abort.signal })).run!;
      } catch (error) {
        if (abort.signal.aborted) return;
        const found = problemOf(error);
        if (isUnauthenticated(found)) needToken();
        setProblem(found);
        return;
      }
      tasks.current = new Map(loaded.tasks.map((t) => [t.taskId, fromState(t)]));
      timeline.current = [];
      eventCount.current = 0;
      setRun(loaded);
      setStatus(loaded.status);
      setProblem(null);
      // The history of a run small enough to replay fills the timeline; a big one's is skipped.
      history = Number(loaded.lastSeq);
      const from = loaded.tasks.length <= AGGREGATE_ABOVE ? 1 : history + 1;
      await follow(runId, from, abort.signal, receive, setStreamProblem);
    })();
    return () => {
      abort.abort();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [runId, generation]);

  // After each batch is drawn: how long each completion took from its event to the screen.
  useEffect(() => {
    const times = painted.current.splice(0);
    if (!times.length) return;
    requestAnimationFrame(() =>
      setTimeout(() => {
        const now = Date.now();
        for (const t of times) metrics.paints.push(now - t);
      }),
    );
  }, [version]);

  return {
    run,
    problem,
    streamProblem,
    status,
    tasks: tasks.current,
    version,
    timeline: timeline.current,
    eventCount: eventCount.current,
    reload: () => setGeneration((n) => n + 1),
  };
}

async function follow(
  runId: string,
  fromSeq: number,
  signal: AbortSignal,
  receive: (event: RunEvent) => void,
  report: (problem: Problem | null) => void,
) {
  let next = fromSeq;
  let delay = 250;
  while (!signal.aborted) {
    try {
      for await (const item of api.watchRun({ runId, fromSeq: BigInt(next) }, { signal })) {
        if (!item.event) continue;
        next = Number(item.event.seq) + 1;
        delay = 250;
        report(null);
        receive(item.event);
      }
      return; // the run ended
    } catch (error) {
      if (signal.aborted || isAbort(error)) return;
      const found = problemOf(error);
      report(found);
      if (found.code !== Code.Unavailable && found.code !== Code.Unknown && found.code !== Code.Internal) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(5000, delay * 2);
    }
  }
}

function blankTask(): TaskLive {
  return { status: "PENDING", progress: 0, message: "", error: "", start: null, end: null, attempt: 0, cached: false };
}

function fromState(state: Run["tasks"][number]): TaskLive {
  const date = (ts: typeof state.startTime) => (ts ? new Date(Number(ts.seconds) * 1000 + ts.nanos / 1e6) : null);
  return {
    status: taskStatusName(state.status),
    progress: state.progress,
    message: state.message,
    error: state.error?.message ?? "",
    start: date(state.startTime),
    end: date(state.endTime),
    attempt: state.attempt,
    cached: state.cached,
  };
}

export const durationOf = (task: TaskLive) => {
  const start = ms(task.start);
  return start === null ? null : (ms(task.end) ?? Date.now()) - start;
};
