// Lays a task graph out with dagre. Up to AGGREGATE_ABOVE tasks every task is a box; past
// that, tasks are grouped by depth band and type (one box per group, its counts drawn as a
// stacked bar), so a 10,000-task run lays out a few hundred boxes and any task is still
// reachable through its group.
import { Graph, layout as dagreLayout } from "@dagrejs/dagre";

export const AGGREGATE_ABOVE = 1500;
/** Past this many tasks a run is first drawn grouped, then task by task (laid out in a
 * worker) up to AGGREGATE_ABOVE. */
export const PROGRESSIVE_ABOVE = 300;
const MAX_BANDS = 120;
export const TASK_BOX = { w: 176, h: 52 };
const GROUP_BOX = { w: 220, h: 64 };

export type GraphTask = { id: string; type: string };
export type GraphEdge = { source: string; target: string };
export type Point = { x: number; y: number };

export type Box = {
  id: string;
  x: number; // centre
  y: number;
  w: number;
  h: number;
  label: string;
  sub: string;
  /** The tasks of a group box; null for a single task's box (its id is the task id). */
  members: string[] | null;
};

export type Layout = {
  boxes: Box[];
  edges: { from: string; to: string; points: Point[] }[];
  width: number;
  height: number;
  aggregated: boolean;
  /** A grouped drawing shown while each task's layout is being computed. */
  provisional?: boolean;
  /** The box each task is drawn in. */
  boxOf: Map<string, string>;
};

export function layoutGraph(tasks: GraphTask[], edges: GraphEdge[]): Layout {
  return tasks.length > AGGREGATE_ABOVE ? layoutGroups(tasks, edges) : layoutTasks(tasks, edges);
}

export function layoutTasks(tasks: GraphTask[], edges: GraphEdge[]): Layout {
  const boxes: Box[] = tasks.map((task) => ({
    x: 0,
    y: 0,
    id: task.id,
    label: task.id,
    sub: task.type,
    members: null,
    ...TASK_BOX,
  }));
  return run(boxes, uniqueEdges(edges.map((e) => [e.source, e.target])), false, identity(tasks));
}

function identity(tasks: GraphTask[]): Map<string, string> {
  return new Map(tasks.map((task) => [task.id, task.id]));
}

export function layoutGroups(tasks: GraphTask[], edges: GraphEdge[]): Layout {
  const depth = depths(tasks, edges);
  const deepest = Math.max(0, ...depth.values());
  const band = Math.max(1, Math.ceil((deepest + 1) / MAX_BANDS));
  const groups = new Map<string, { members: string[]; type: string; band: number }>();
  const boxOf = new Map<string, string>();
  for (const task of tasks) {
    const b = Math.floor((depth.get(task.id) ?? 0) / band);
    const key = `group:${b}:${task.type}`;
    const group = groups.get(key) ?? { members: [], type: task.type, band: b };
    group.members.push(task.id);
    groups.set(key, group);
    boxOf.set(task.id, key);
  }
  const boxes: Box[] = [...groups].map(([id, group]) => ({
    x: 0,
    y: 0,
    id,
    label: group.members.length === 1 ? group.members[0] : `${group.members.length.toLocaleString("en-US")} tasks`,
    sub: band === 1 ? `${group.type} · depth ${group.band}` : `${group.type} · depths ${group.band * band}–${group.band * band + band - 1}`,
    members: group.members,
    ...GROUP_BOX,
  }));
  const pairs = edges
    .map((e) => [boxOf.get(e.source) ?? "", boxOf.get(e.target) ?? ""] as [string, string])
    .filter(([a, b]) => a && b && a !== b);
  return run(boxes, uniqueEdges(pairs), true, boxOf);
}

/** Longest path from a root, per task (Kahn's order; tasks on a cycle count as depth 0). */
function depths(tasks: GraphTask[], edges: GraphEdge[]): Map<string, number> {
  const depth = new Map(tasks.map((task) => [task.id, 0]));
  const incoming = new Map(tasks.map((task) => [task.id, 0]));
  const out = new Map<string, string[]>();
  for (const e of edges) {
    if (!depth.has(e.source) || !depth.has(e.target)) continue;
    incoming.set(e.target, (incoming.get(e.target) ?? 0) + 1);
    const list = out.get(e.source) ?? [];
    list.push(e.target);
    out.set(e.source, list);
  }
  const ready = tasks.filter((task) => incoming.get(task.id) === 0).map((task) => task.id);
  for (let i = 0; i < ready.length; i++) {
    const id = ready[i];
    for (const next of out.get(id) ?? []) {
      depth.set(next, Math.max(depth.get(next) ?? 0, (depth.get(id) ?? 0) + 1));
      const left = (incoming.get(next) ?? 1) - 1;
      incoming.set(next, left);
      if (left === 0) ready.push(next);
    }
  }
  return depth;
}

function uniqueEdges(pairs: [string, string][]): [string, string][] {
  const seen = new Set<string>();
  return pairs.filter(([a, b]) => {
    const key = `${a}\u0000${b}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function run(
  boxes: Box[],
  pairs: [string, string][],
  aggregated: boolean,
  boxOf: Map<string, string>,
): Layout {
  const g = new Graph({ multigraph: false });
  // network-simplex ranks give the nicest drawing but grow fast; longest-path past 300.
  g.setGraph({
    rankdir: "LR",
    nodesep: 18,
    ranksep: 56,
    marginx: 24,
    marginy: 24,
    ranker: boxes.length > 300 ? "longest-path" : "network-simplex",
  });
  g.setDefaultEdgeLabel(() => ({}));
  const byId = new Map(boxes.map((box) => [box.id, box]));
  for (const box of boxes) g.setNode(box.id, { width: box.w, height: box.h });
  for (const [a, b] of pairs) if (byId.has(a) && byId.has(b)) g.setEdge(a, b);
  dagreLayout(g);
  for (const box of boxes) {
    const node = g.node(box.id);
    box.x = node.x;
    box.y = node.y;
  }
  const edges = g.edges().map((e) => ({
    from: e.v,
    to: e.w,
    points: (g.edge(e).points ?? []) as Point[],
  }));
  const label = g.graph();
  return {
    boxes,
    edges,
    width: label.width ?? 0,
    height: label.height ?? 0,
    aggregated,
    boxOf,
  };
}
