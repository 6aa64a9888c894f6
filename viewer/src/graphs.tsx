// Stored graphs, most recently updated first.
import { useState } from "preact/hooks";
import { api, dateOf } from "./api";
import { formatTime } from "./format";
import { useLoad } from "./load";
import { graphHref } from "./router";
import { Empty, ErrorBox, Loading } from "./ui";

export function GraphsPage() {
  const [pages, setPages] = useState<string[]>([""]);
  const pageToken = pages[pages.length - 1];
  const graphs = useLoad((signal) => api.listGraphs({ pageSize: 50, pageToken }, { signal }), [pageToken]);
  const list = graphs.value?.graphs ?? [];
  return (
    <section class="page">
      <div class="page-head">
        <h1>Graphs</h1>
        <a class="button primary" href="#/graphs/new">New graph</a>
      </div>
      {graphs.problem && <ErrorBox problem={graphs.problem} retry={graphs.reload} />}
      {!graphs.value && graphs.loading && <Loading what="graphs" />}
      {graphs.value && list.length === 0 && (
        <Empty title="No stored graphs yet.">
          <a href="#/graphs/new">Write one</a>, or store one with <code>SaveGraph</code>; then run it from here.
        </Empty>
      )}
      {list.length > 0 && (
        <table class="runs">
          <thead>
            <tr><th>Name</th><th>Id</th><th>Version</th><th>Updated</th><th>Description</th></tr>
          </thead>
          <tbody>
            {list.map((g) => (
              <tr key={g.graphId} data-graph-id={g.graphId}>
                <td><a href={graphHref(g.graphId)}>{g.name || "(unnamed)"}</a></td>
                <td class="mono">{g.graphId}</td>
                <td>{String(g.version)}</td>
                <td>{formatTime(dateOf(g.updateTime))}</td>
                <td>{g.description}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="pager">
        <button type="button" disabled={pages.length < 2} onClick={() => setPages(pages.slice(0, -1))}>← Newer</button>
        <button type="button" disabled={!graphs.value?.nextPageToken} onClick={() => graphs.value && setPages([...pages, graphs.value.nextPageToken])}>Older →</button>
      </div>
    </section>
  );
}
