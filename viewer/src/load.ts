// Loading data for a page: the value, the problem if the call failed, and a way to reload.
// An UNAUTHENTICATED answer opens the token prompt.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { isUnauthenticated, needToken, problemOf, type Problem } from "./api";

export type Loaded<T> = {
  value: T | null;
  problem: Problem | null;
  loading: boolean;
  reload: () => void;
};

export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [value, setValue] = useState<T | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const abort = new AbortController();
    setLoading(true);
    loadRef
      .current(abort.signal)
      .then((result) => {
        if (abort.signal.aborted) return;
        setValue(result);
        setProblem(null);
      })
      .catch((error: unknown) => {
        if (abort.signal.aborted) return;
        const found = problemOf(error);
        if (isUnauthenticated(found)) needToken();
        setProblem(found);
      })
      .finally(() => {
        if (!abort.signal.aborted) setLoading(false);
      });
    return () => abort.abort();
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { value, problem, loading, reload };
}

/** Calls ``tick`` every ``ms`` while the page is visible. */
export function useInterval(tick: () => void, ms: number | null) {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => {
    if (ms === null) return;
    const id = setInterval(() => {
      if (document.visibilityState === "visible") ref.current();
    }, ms);
    return () => clearInterval(id);
  }, [ms]);
}
