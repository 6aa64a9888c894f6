// The orchestrator's API over Connect (JSON), on this page's own origin, with the bearer
// token from sessionStorage. Errors come back as Problems: code, message and the server's
// field violations (google.rpc.BadRequest), retry delay and reason.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { OrchestratorService } from "./gen/graphmesh/v1/orchestrator_pb";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb";

const TOKEN_KEY = "graphmesh.token";
type Listener = () => void;
const tokenListeners = new Set<Listener>();

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set(value: string) {
    sessionStorage.setItem(TOKEN_KEY, value.trim());
    tokenListeners.forEach((listener) => listener());
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenListeners.forEach((listener) => listener());
  },
  subscribe(listener: Listener): () => void {
    tokenListeners.add(listener);
    return () => tokenListeners.delete(listener);
  },
};

export const authEvents = new EventTarget();
/** Pages call this when the server answers UNAUTHENTICATED: the token prompt opens. */
export const needToken = () => authEvents.dispatchEvent(new Event("need-token"));

const withToken: Interceptor = (next) => async (request) => {
  const value = token.get();
  if (value) request.header.set("Authorization", `Bearer ${value}`);
  return next(request);
};

export const api = createClient(
  OrchestratorService,
  createConnectTransport({ baseUrl: location.origin, interceptors: [withToken] }),
);

export type Violation = { field: string; description: string; reason: string };
export type Problem = {
  code: Code;
  codeName: string;
  message: string;
  reason: string;
  violations: Violation[];
  retryAfterS: number | null;
};

export function problemOf(error: unknown): Problem {
  const err = ConnectError.from(error);
  const badRequest = err.findDetails(BadRequestSchema);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const retry = err.findDetails(RetryInfoSchema)[0];
  const delay = retry?.retryDelay;
  return {
    code: err.code,
    codeName: Code[err.code] ?? "Unknown",
    message: err.rawMessage,
    reason: info?.reason ?? "",
    violations: badRequest.flatMap((detail) =>
      detail.fieldViolations.map((v) => ({
        field: v.field,
        description: v.description,
        reason: v.reason,
      })),
    ),
    retryAfterS: delay ? Number(delay.seconds) + delay.nanos / 1e9 : null,
  };
}

export const isUnauthenticated = (problem: Problem) => problem.code === Code.Unauthenticated;
export const isAbort = (error: unknown) => ConnectError.from(error).code === Code.Canceled;

export function dateOf(ts: Timestamp | undefined): Date | null {
  return ts ? timestampDate(ts) : null;
}

export type ViewerConfig = { traceUrlTemplate: string | null };
let configPromise: Promise<ViewerConfig> | null = null;
export function viewerConfig(): Promise<ViewerConfig> {
  configPromise ??= fetch("/viewer-config.json")
    .then((response) => (response.ok ? response.json() : { traceUrlTemplate: null }))
    .catch(() => ({ traceUrlTemplate: null }));
  return configPromise;
}

export function traceUrl(config: ViewerConfig, traceId: string): string | null {
  if (!config.traceUrlTemplate || !/^[0-9a-f]{32}$/.test(traceId)) return null;
  return config.traceUrlTemplate.replace("{trace_id}", traceId);
}
