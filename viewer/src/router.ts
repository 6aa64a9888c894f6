// Hash routes: #/runs, #/runs/<id>, #/graphs, #/graphs/<id>, #/graphs/new, #/catalog.
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "runs"; params: URLSearchParams }
  | { page: "run"; runId: string }
  | { page: "graphs" }
  | { page: "graph"; graphId: string | null }
  | { page: "catalog" };

export function parseRoute(hash: string): Route {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "runs" && parts[1]) return { page: "run", runId: parts[1] };
  if (parts[0] === "graphs" && parts[1])
    return { page: "graph", graphId: parts[1] === "new" ? null : parts[1] };
  if (parts[0] === "graphs") return { page: "graphs" };
  if (parts[0] === "catalog") return { page: "catalog" };
  return { page: "runs", params: new URLSearchParams(query) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export const go = (hash: string) => {
  location.hash = hash;
};

export const runHref = (runId: string) => `#/runs/${encodeURIComponent(runId)}`;
export const graphHref = (graphId: string) => `#/graphs/${encodeURIComponent(graphId)}`;
