// Runs, newest first: filter by status and label, page by page, refreshed every few seconds.
import { useEffect, useState } from "preact/hooks";
import { api, dateOf, traceUrl, viewerConfig, type ViewerConfig } from "./api";
import { RunStatus } from "./gen/graphmesh/v1/common_pb";
import { RunView, type Run } from "./gen/graphmesh/v1/orchestrator_pb";
import {
  count,
  durationBetween,
  formatDuration,
  formatTime,
  RUN_STATUSES,
  runStatusName,
  shortId,
} from "./format";
import { useInterval, useLoad } from "./load";
import { go, runHref } from "./router";
import { Badge, Empty, ErrorBox, Loading } from "./ui";

const PAGE_SIZE = 25;

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(",")) {
    const [key, ...rest] = pair.split("=");
    if (key.trim()) labels[key.trim()] = rest.join("=").trim();
  }
  return labels;
}

/** Tokens (input + output) a run's model calls used; null when it used none. */
function tokensOf(run: Run): number | null {
  const usage = run.usage;
  if (!usage) return null;
  const total = Number(usage.inputTokens) + Number(usage.outputTokens);
  return total > 0 ? total : null;
}

export function RunsPage({ params }: { params: URLSearchParams }) {
  const status = params.get("status") ?? "";
  const labelText = params.get("labels") ?? "";
  const [pages, setPages] = useState<string[]>([""]); // page tokens: first page, then older
  const pageToken = pages[pages.length - 1];
  const [config, setConfig] = useState<ViewerConfig>({ traceUrlTemplate: null });
  useEffect(() => {
    viewerConfig().then(setConfig);
  }, []);
  useEffect(() => setPages([""]), [status, labelText]);
  const runs = useLoad(
    (signal) =>
      api.listRuns(
        {
          statuses: status ? [Number(status) as RunStatus] : [],
          labels: parseLabels(labelText),
          pageSize: PAGE_SIZE,
          pageToken,
          view: RunView.BASIC,
        },
        { signal },
      ),
    [status, labelText, pageToken],
  );
  useInterval(runs.reload, 3000);
  const setFilter = (name: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    go(`#/runs?${next}`);
  };
  const list = runs.value?.runs ?? [];
  const withTokens = list.some((run) => tokensOf(run) !== null);
  const withTraces = Boolean(config.traceUrlTemplate);
  return (
    <section class="page">
      <div class="page-head">
        <h1>Runs</h1>
        <form class="filters" onSubmit={(event) => event.preventDefault()}>
          <label>
            Status{" "}
            <select
              name="status"
              value={status}
              onChange={(event) => setFilter("status", (event.target as HTMLSelectElement).value)}
            >
              <option value="">any</option>
              {RUN_STATUSES.map(([value, label]) => (
                <option key={value} value={String(value)}>
                  {label}
                </option>
              ))}
            </select>
          </label>
          <label>
            Labels{" "}
            <input
              name="labels"
              placeholder="team=search, env=prod"
              value={labelText}
              onChange={(event) => setFilter("labels", (event.target as HTMLInputElement).value)}
            />
          </label>
        </form>
      </div>
      {runs.problem && <ErrorBox problem={runs.problem} retry={runs.reload} />}
      {!runs.value && runs.loading && <Loading what="runs" />}
      {runs.value && list.length === 0 && (
        <Empty title={status || labelText ? "No runs match these filters." : "No runs yet."}>
          {status || labelText ? (
            <a href="#/runs">Clear the filters</a>
          ) : (
            <>
              Open <a href="#/graphs">Graphs</a> to submit one, or run{" "}
              <code>graphmesh submit GRAPH.json</code>.
            </>
          )}
        </Empty>
      )}
      {list.length > 0 && (
        <table class="runs">
          <thead>
            <tr>
              <th>Run</th>
              <th>Status</th>
              <th>Started</th>
              <th>Duration</th>
              <th>Tasks</th>
              {withTokens && <th>Tokens</th>}
              <th>Labels</th>
              {withTraces && <th>Trace</th>}
            </tr>
          </thead>
          <tbody>
            {list.map((run) => (
              <RunRow
                key={run.runId}
                run={run}
                config={config}
                withTokens={withTokens}
                withTraces={withTraces}
              />
            ))}
          </tbody>
        </table>
      )}
      <div class="pager">
        <button type="button" disabled={pages.length < 2} onClick={() => setPages(pages.slice(0, -1))}>
          ← Newer
        </button>
        <button
          type="button"
          disabled={!runs.value?.nextPageToken}
          onClick={() => runs.value && setPages([...pages, runs.value.nextPageToken])}
        >
          Older →
        </button>
      </div>
    </section>
  );
}

function RunRow(props: { run: Run; config: ViewerConfig; withTokens: boolean; withTraces: boolean }) {
  const { run, config } = props;
  const counts = run.taskCounts;
  const started = dateOf(run.startTime);
  const ended = dateOf(run.endTime);
  const trace = traceUrl(config, run.traceId);
  const tokens = tokensOf(run);
  const status = runStatusName(run.status);
  return (
    <tr data-run-id={run.runId} data-status={status.toUpperCase()}>
      <td>
        <a href={runHref(run.runId)} class="mono">
          {shortId(run.runId)}
        </a>
      </td>
      <td>
        <Badge status={status} />
      </td>
      <td>{formatTime(started ?? dateOf(run.createTime))}</td>
      <td>{formatDuration(durationBetween(started, ended))}</td>
      <td class="counts">
        {counts ? (
          <>
            <span class="ok">{count(counts.completed)}</span>/{count(counts.total)}
            {counts.processing > 0 && <span class="running"> · {count(counts.processing)} running</span>}
            {counts.failed > 0 && <span class="bad"> · {count(counts.failed)} failed</span>}
          </>
        ) : (
          "—"
        )}
      </td>
      {props.withTokens && <td>{tokens === null ? "—" : count(tokens)}</td>}
      <td class="labels">
        {Object.entries(run.labels).map(([key, value]) => (
          <span class="label" key={key}>
            {key}={value}
          </span>
        ))}
      </td>
      {props.withTraces && (
        <td>
          {trace ? (
            <a href={trace} target="_blank" rel="noopener noreferrer">
              trace ↗
            </a>
          ) : (
            "—"
          )}
        </td>
      )}
    </tr>
  );
}
