// Small shared pieces: status badges, loading, empty and error states.
import type { ComponentChildren } from "preact";
import type { Problem } from "./api";

export function Badge({ status }: { status: string }) {
  return <span class={`badge status-${status.toLowerCase()}`}>{status.toLowerCase()}</span>;
}

export function Loading({ what }: { what: string }) {
  return (
    <div class="state loading" role="status">
      <span class="spinner" aria-hidden="true" /> Loading {what}…
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="state empty">
      <strong>{title}</strong>
      <div>{children}</div>
    </div>
  );
}

const ADVICE: Record<string, string> = {
  Unavailable: "The orchestrator is not answering (restarting, or its database is down). Retry in a moment.",
  NotFound: "It does not exist, or it belongs to another tenant.",
  PermissionDenied: "Your token does not give access to this.",
  ResourceExhausted: "A quota or limit was reached.",
  InvalidArgument: "The request was refused; the details below say which field.",
  FailedPrecondition: "The run is not in a state that allows this.",
  Internal: "A bug in the orchestrator; give the reference to its operator.",
};

export function ErrorBox({ problem, retry }: { problem: Problem; retry?: () => void }) {
  return (
    <div class="state error" role="alert">
      <strong>
        {problem.codeName}: {problem.message || "request failed"}
      </strong>
      <div class="advice">{ADVICE[problem.codeName] ?? ""}</div>
      {problem.retryAfterS !== null && (
        <div class="advice">Retry after {problem.retryAfterS.toFixed(1)} s.</div>
      )}
      {problem.violations.length > 0 && (
        <ul class="violations">
          {problem.violations.map((v) => (
            <li key={v.field + v.description}>
              <code>{v.field}</code> {v.description}
            </li>
          ))}
        </ul>
      )}
      {retry && (
        <button type="button" onClick={retry}>
          Retry
        </button>
      )}
    </div>
  );
}
