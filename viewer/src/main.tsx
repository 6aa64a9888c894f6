// The viewer's shell: navigation, the token prompt, and the page of the current route.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./style.css";
import { authEvents, token } from "./api";
import { useRoute } from "./router";
import { RunsPage } from "./runs";
import { RunPage } from "./run";
import { GraphsPage } from "./graphs";
import { GraphEditorPage } from "./editor";
import { CatalogPage } from "./catalog";

function TokenPrompt({ rejected }: { rejected: boolean }) {
  const [value, setValue] = useState("");
  return (
    <div class="token-overlay">
      <form
        class="token-card"
        onSubmit={(event) => {
          event.preventDefault();
          if (value.trim()) token.set(value);
        }}
      >
        <h2>Sign in to this orchestrator</h2>
        <p>
          Paste a bearer token (one of <code>GRAPHMESH_TOKENS</code>). It is kept in this tab
          only and sent with each call as <code>Authorization: Bearer …</code>.
        </p>
        {rejected && <p class="token-error">The orchestrator did not accept that token.</p>}
        <input
          type="password"
          name="token"
          autoComplete="off"
          placeholder="token"
          value={value}
          onInput={(event) => setValue((event.target as HTMLInputElement).value)}
          autoFocus
        />
        <button type="submit">Sign in</button>
      </form>
    </div>
  );
}

function App() {
  const route = useRoute();
  const [prompt, setPrompt] = useState(false);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const open = () => setPrompt(true);
    authEvents.addEventListener("need-token", open);
    const unsubscribe = token.subscribe(() => {
      setPrompt(false);
      setGeneration((n) => n + 1); // pages load again with the new token
    });
    return () => {
      authEvents.removeEventListener("need-token", open);
      unsubscribe();
    };
  }, []);
  const tab = route.page === "run" ? "runs" : route.page === "graph" ? "graphs" : route.page;
  return (
    <div class="shell">
      <header class="topbar">
        <a class="brand" href="#/runs">
          graphmesh
        </a>
        <nav>
          {[
            ["runs", "Runs"],
            ["graphs", "Graphs"],
            ["catalog", "Task catalog"],
          ].map(([name, label]) => (
            <a key={name} href={`#/${name}`} class={tab === name ? "active" : ""}>
              {label}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        {token.get() && (
          <button type="button" class="link" onClick={() => token.clear()}>
            Sign out
          </button>
        )}
      </header>
      <main key={generation}>
        {route.page === "runs" && <RunsPage params={route.params} />}
        {route.page === "run" && <RunPage runId={route.runId} />}
        {route.page === "graphs" && <GraphsPage />}
        {route.page === "graph" && <GraphEditorPage graphId={route.graphId} />}
        {route.page === "catalog" && <CatalogPage />}
      </main>
      {prompt && <TokenPrompt rejected={Boolean(token.get())} />}
    </div>
  );
}

render(<App />, document.getElementById("app")!);
