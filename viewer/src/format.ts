// Display helpers: statuses, times, durations, numbers.
import { RunStatus, TaskStatus } from "./gen/graphmesh/v1/common_pb";

export const RUN_STATUSES: [RunStatus, string][] = [
  [RunStatus.PENDING, "Pending"],
  [RunStatus.RUNNING, "Running"],
  [RunStatus.COMPLETED, "Completed"],
  [RunStatus.FAILED, "Failed"],
  [RunStatus.CANCELLING, "Cancelling"],
  [RunStatus.CANCELLED, "Cancelled"],
];

export const runStatusName = (status: RunStatus) =>
  RUN_STATUSES.find(([value]) => value === status)?.[1] ?? "Unknown";

export const TASK_STATUS_NAMES: Record<number, string> = {
  [TaskStatus.PENDING]: "PENDING",
  [TaskStatus.PROCESSING]: "PROCESSING",
  [TaskStatus.COMPLETED]: "COMPLETED",
  [TaskStatus.ABORTING]: "ABORTING",
  [TaskStatus.FAILED]: "FAILED",
  [TaskStatus.SKIPPED]: "SKIPPED",
};

export const taskStatusName = (status: TaskStatus) => TASK_STATUS_NAMES[status] ?? "PENDING";

export function formatTime(date: Date | null): string {
  if (!date) return "—";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString()
    : `${date.toLocaleDateString()} ${date.toLocaleTimeString()}`;
}

export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function durationBetween(start: Date | null, end: Date | null): number | null {
  if (!start) return null;
  return (end ?? new Date()).getTime() - start.getTime();
}

export const count = (n: number) => n.toLocaleString("en-US");

export function shortId(id: string): string {
  return id.length > 12 ? id.slice(0, 12) : id;
}
