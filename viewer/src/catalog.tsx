// Every task type the orchestrator runs, with its ports as the server describes them.
import { useState } from "preact/hooks";
import { api } from "./api";
import type { Port } from "./gen/graphmesh/v1/common_pb";
import type { TaskType } from "./gen/graphmesh/v1/orchestrator_pb";
import { useLoad } from "./load";
import { Empty, ErrorBox, Loading } from "./ui";

export function CatalogPage() {
  const catalog = useLoad((signal) => api.listTaskTypes({}, { signal }), []);
  const [query, setQuery] = useState("");
  const types = (catalog.value?.taskTypes ?? []).filter(
    (t) => !query || `${t.type} ${t.category} ${t.description}`.toLowerCase().includes(query.toLowerCase()),
  );
  const categories = [...new Set(types.map((t) => t.category))].sort();
  return (
    <section class="page">
      <div class="page-head">
        <h1>Task catalog</h1>
        <input class="search" placeholder="Filter task types" value={query} onInput={(e) => setQuery((e.target as HTMLInputElement).value)} />
      </div>
      {catalog.problem && <ErrorBox problem={catalog.problem} retry={catalog.reload} />}
      {!catalog.value && catalog.loading && <Loading what="the task catalog" />}
      {catalog.value && types.length === 0 && <Empty title="No task type matches." />}
      {categories.map((category) => (
        <div key={category} class="category">
          <h2>{category}</h2>
          <div class="cards">
            {types.filter((t) => t.category === category).map((t) => <TypeCard key={t.type} type={t} />)}
          </div>
        </div>
      ))}
    </section>
  );
}

function TypeCard({ type }: { type: TaskType }) {
  return (
    <article class="card" data-task-type={type.type}>
      <header>
        <h3 class="mono">{type.type}</h3>
        <span class="flags">
          {type.sideEffects && <span class="flag">side effects</span>}
          {type.cacheable && <span class="flag">cacheable</span>}
          {type.compound && <span class="flag">compound</span>}
          <span class="flag">v{type.version}</span>
        </span>
      </header>
      <p>{type.description}</p>
      <Ports title="Inputs" ports={type.inputs} />
      <Ports title="Outputs" ports={type.outputs} />
    </article>
  );
}

function Ports({ title, ports }: { title: string; ports: Port[] }) {
  if (!ports.length) return null;
  return (
    <table class="ports">
      <caption>{title}</caption>
      <tbody>
        {ports.map((p) => (
          <tr key={p.id}>
            <td class="mono">{p.id}</td>
            <td><span class="type">{p.valueType}{p.isArray ? "[]" : ""}</span>{p.required && <span class="req" title="required">*</span>}</td>
            <td>{p.description || p.name}{p.default !== undefined && <span class="hint"> · default <code>{JSON.stringify(p.default)}</code></span>}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
