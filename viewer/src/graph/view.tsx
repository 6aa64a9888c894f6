// Draws a laid-out graph as SVG, drawing only the boxes and edges inside the viewport
// (pan by dragging, zoom with the wheel or the buttons). Boxes are coloured by status
// with a progress bar; group boxes show their tasks' statuses as a stacked bar.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Box, Layout } from "./layout";

export type TaskView = { status: string; progress: number };
export type Marks = Map<string, string[]>; // task id -> problems to show on its box

type View = { k: number; x: number; y: number };
const STATUS_ORDER = ["COMPLETED", "PROCESSING", "ABORTING", "FAILED", "SKIPPED", "PENDING"];
const MARGIN = 80;
const READABLE = 0.5;

type Props = {
  layout: Layout;
  states: Map<string, TaskView>;
  version: number; // bumps whenever ``states`` changed in place
  selected: string | null;
  onSelect: (boxId: string) => void;
  marks?: Marks;
  onDrawn?: () => void;
};

export function GraphView(props: Props) {
  const { layout } = props;
  const host = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState({ w: 0, h: 0 });
  const [view, setView] = useState<View | null>(null);
  const drag = useRef<{ x: number; y: number; view: View } | null>(null);

  useLayoutEffect(() => {
    const element = host.current!;
    const measure = () => setSize({ w: element.clientWidth, h: element.clientHeight });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  const fit = () => setView(fitView(layout, size));
  useEffect(() => {
    if (size.w > 0) setView(startView(layout, size));
  }, [layout, size.w > 0]);

  const drawn = Boolean(view) && size.w > 0;
  useEffect(() => {
    if (drawn) props.onDrawn?.();
  }, [drawn, layout]);

  const visible = useMemo(() => {
    if (!view) return { boxes: [] as Box[], edges: [] as Layout["edges"] };
    const left = -view.x / view.k - MARGIN;
    const top = -view.y / view.k - MARGIN;
    const right = left + size.w / view.k + 2 * MARGIN;
    const bottom = top + size.h / view.k + 2 * MARGIN;
    const inside = (x0: number, y0: number, x1: number, y1: number) =>
      x1 >= left && x0 <= right && y1 >= top && y0 <= bottom;
    return {
      boxes: layout.boxes.filter((b) => inside(b.x - b.w / 2, b.y - b.h / 2, b.x + b.w / 2, b.y + b.h / 2)),
      edges: layout.edges.filter((e) => {
        const xs = e.points.map((p) => p.x);
        const ys = e.points.map((p) => p.y);
        return inside(Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys));
      }),
    };
  }, [layout, view, size]);

  const zoom = (factor: number, cx = size.w / 2, cy = size.h / 2) =>
    setView((v) => {
      if (!v) return v;
      const k = Math.min(4, Math.max(0.02, v.k * factor));
      return { k, x: cx - ((cx - v.x) * k) / v.k, y: cy - ((cy - v.y) * k) / v.k };
    });
  const detailed = (view?.k ?? 1) >= 0.45;

  return (
    <div class="graph-host" ref={host}>
      <svg
        class="graph"
        role="img"
        aria-label={`graph of ${layout.boxes.length} ${layout.aggregated ? "task groups" : "tasks"}`}
        data-drawn={drawn ? "true" : "false"}
        onWheel={(event) => {
          event.preventDefault();
          const rect = (event.currentTarget as SVGElement).getBoundingClientRect();
          zoom(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
        }}
        onPointerDown={(event) => {
          if (!view || (event.target as Element).closest(".node")) return;
          drag.current = { x: event.clientX, y: event.clientY, view };
          (event.currentTarget as Element).setPointerCapture(event.pointerId);
        }}
        onPointerMove={(event) => {
          const start = drag.current;
          if (!start) return;
          setView({ ...start.view, x: start.view.x + event.clientX - start.x, y: start.view.y + event.clientY - start.y });
        }}
        onPointerUp={() => {
          drag.current = null;
        }}
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="arrow" />
          </marker>
        </defs>
        {view && (
          <g transform={`translate(${view.x},${view.y}) scale(${view.k})`}>
            {visible.edges.map((e) => (
              <path
                key={`${e.from}->${e.to}`}
                class="edge"
                d={e.points.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ")}
                marker-end="url(#arrow)"
              />
            ))}
            {visible.boxes.map((box) =>
              box.members ? (
                <GroupBox key={box.id} box={box} {...props} detailed={detailed} />
              ) : (
                <TaskBox key={box.id} box={box} {...props} detailed={detailed} />
              ),
            )}
          </g>
        )}
      </svg>
      <div class="graph-tools">
        <button type="button" title="Zoom in" onClick={() => zoom(1.25)}>+</button>
        <button type="button" title="Zoom out" onClick={() => zoom(0.8)}>−</button>
        <button type="button" title="Fit the graph" onClick={fit}>Fit</button>
      </div>
      {layout.provisional && <div class="graph-note">Drawing each task…</div>}
      {layout.aggregated && !layout.provisional && (
        <div class="graph-note">
          {layout.boxOf.size.toLocaleString("en-US")} tasks drawn as {layout.boxes.length} groups
          (by depth and type); click a group to list its tasks.
        </div>
      )}
    </div>
  );
}

/** The whole graph when it fits readably; else its start (left, and top when tall) at a
 * zoom where boxes can be read: the rest is a drag or the Fit button away. */
function startView(layout: Layout, size: { w: number; h: number }): View {
  const whole = fitView(layout, size);
  if (whole.k >= READABLE) return whole;
  const tall = layout.height * READABLE > size.h;
  return { k: READABLE, x: 8, y: tall ? 8 : (size.h - layout.height * READABLE) / 2 };
}

function fitView(layout: Layout, size: { w: number; h: number }): View {
  const k = Math.min(1.2, (size.w - 16) / Math.max(1, layout.width), (size.h - 16) / Math.max(1, layout.height));
  const scale = Math.max(0.02, k);
  return {
    k: scale,
    x: (size.w - layout.width * scale) / 2,
    y: (size.h - layout.height * scale) / 2,
  };
}

type BoxProps = Props & { box: Box; detailed: boolean };

function TaskBox({ box, states, selected, onSelect, marks, detailed }: BoxProps) {
  const state = states.get(box.id) ?? { status: "PENDING", progress: 0 };
  const problems = marks?.get(box.id) ?? [];
  const progress = state.status === "COMPLETED" ? 100 : state.progress;
  const classes = ["node", `status-${state.status.toLowerCase()}`];
  if (selected === box.id) classes.push("selected");
  if (problems.length) classes.push("invalid");
  return (
    <g
      class={classes.join(" ")}
      data-task-id={box.id}
      data-status={state.status}
      transform={`translate(${box.x - box.w / 2},${box.y - box.h / 2})`}
      onClick={() => onSelect(box.id)}
    >
      <title>{`${box.label} (${box.sub}): ${state.status.toLowerCase()}${problems.length ? "\n" + problems.join("\n") : ""}`}</title>
      <rect class="node-body" width={box.w} height={box.h} rx="8" />
      <rect class="node-track" x="10" y={box.h - 11} width={box.w - 20} height="4" rx="2" />
      <rect class="node-bar" x="10" y={box.h - 11} width={((box.w - 20) * Math.max(0, Math.min(100, progress))) / 100} height="4" rx="2" />
      {detailed && (
        <>
          <text class="node-label" x="12" y="20">{clip(box.label, 22)}</text>
          <text class="node-sub" x="12" y="34">{clip(box.sub, 26)}</text>
        </>
      )}
      {problems.length > 0 && (
        <g class="node-problem" transform={`translate(${box.w - 12},0)`}>
          <circle r="9" />
          <text y="4" text-anchor="middle">{problems.length}</text>
        </g>
      )}
    </g>
  );
}

function GroupBox({ box, states, selected, onSelect, detailed }: BoxProps) {
  const counts = new Map<string, number>();
  for (const id of box.members ?? []) {
    const status = states.get(id)?.status ?? "PENDING";
    counts.set(status, (counts.get(status) ?? 0) + 1);
  }
  const total = box.members?.length ?? 1;
  const status = counts.get("FAILED")
    ? "FAILED"
    : counts.get("PROCESSING") || counts.get("ABORTING")
      ? "PROCESSING"
      : counts.get("COMPLETED") === total
        ? "COMPLETED"
        : (counts.get("SKIPPED") ?? 0) + (counts.get("COMPLETED") ?? 0) === total
          ? "SKIPPED"
          : "PENDING";
  let x = 10;
  const width = box.w - 20;
  return (
    <g
      class={`node group status-${status.toLowerCase()}${selected === box.id ? " selected" : ""}`}
      data-group-id={box.id}
      data-status={status}
      transform={`translate(${box.x - box.w / 2},${box.y - box.h / 2})`}
      onClick={() => onSelect(box.id)}
    >
      <title>{`${box.label}: ${STATUS_ORDER.filter((s) => counts.get(s)).map((s) => `${counts.get(s)} ${s.toLowerCase()}`).join(", ")}`}</title>
      <rect class="node-body" width={box.w} height={box.h} rx="8" />
      {STATUS_ORDER.map((s) => {
        const n = counts.get(s) ?? 0;
        if (!n) return null;
        const w = (width * n) / total;
        const part = <rect key={s} class={`seg seg-${s.toLowerCase()}`} x={x} y={box.h - 14} width={w} height="7" />;
        x += w;
        return part;
      })}
      {detailed && (
        <>
          <text class="node-label" x="12" y="22">{clip(box.label, 26)}</text>
          <text class="node-sub" x="12" y="38">{clip(box.sub, 32)}</text>
        </>
      )}
    </g>
  );
}

const clip = (text: string, n: number) => (text.length > n ? text.slice(0, n - 1) + "…" : text);
