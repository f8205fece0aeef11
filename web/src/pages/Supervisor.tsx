import { useEffect, useState } from "preact/hooks";
import { api } from "../api/client";
import type { TaskNode } from "../api/types";
import { PageHeading } from "../components/PageHeading";
import { LoadError, Loading } from "../components/Status";
import { formatTimestamp } from "../format";

const REFRESH_MS = 2000;

export function countTasks(node: TaskNode): number {
  return 1 + node.children.reduce((sum, child) => sum + countTasks(child), 0);
}

function Node({ node }: { node: TaskNode }) {
  const label = (
    <span class={`task${node.system ? " task-system" : ""}`}>
      <span class="task-name">{node.name}</span>
      {node.system && <span class="badge badge-muted">trio</span>}
      {node.children.length > 0 && <span class="task-count muted">{node.children.length}</span>}
    </span>
  );
  if (!node.children.length) return <li class="task-leaf">{label}</li>;
  return (
    <li class="task-branch">
      <details open>
        <summary>{label}</summary>
        <ul>
          {node.children.map((child, index) => (
            <Node key={`${child.name}#${index}`} node={child} />
          ))}
        </ul>
      </details>
    </li>
  );
}

/** /supervisor: the server's live Trio task tree, refreshed every 2 s while the tab is visible. */
export function SupervisorPage() {
  const [tree, setTree] = useState<TaskNode | null>(null);
  const [text, setText] = useState("");
  const [updated, setUpdated] = useState<number | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [visible, setVisible] = useState(document.visibilityState !== "hidden");

  useEffect(() => {
    const onVisibility = () => setVisible(document.visibilityState !== "hidden");
    document.addEventListener("visibilitychange", onVisibility);
    return () => document.removeEventListener("visibilitychange", onVisibility);
  }, []);

  useEffect(() => {
    if (!visible) return;
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // One request at a time: the next starts 2 s after the last answer.
    const load = () =>
      api
        .get<{ tree: TaskNode; text: string }>("/api/system/tasks")
        .then(
          (answer) => {
            if (!alive) return;
            setTree(answer.tree);
            setText(answer.text);
            setUpdated(Date.now());
            setFailure(null);
          },
          (error: unknown) => alive && setFailure(error instanceof Error ? error.message : String(error)),
        )
        .finally(() => {
          if (alive) timer = setTimeout(load, REFRESH_MS);
        });
    void load();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [visible]);

  return (
    <section>
      <header class="page-header">
        <PageHeading title="Supervisor">Supervisor</PageHeading>
        <p class="page-actions muted" role="status">
          {!visible ? "Paused while this tab is hidden" : updated ? `Updated ${formatTimestamp(updated)}` : ""}
        </p>
      </header>
      <p class="lead">
        The server's live task tree: who runs what, and under whom. It refreshes every 2 seconds.
        {tree && ` ${countTasks(tree)} tasks.`}
      </p>
      {failure && (tree ? <p class="form-error" role="alert">Could not refresh: {failure}</p> : <LoadError message={`Could not load the task tree: ${failure}`} />)}
      {!tree && !failure && <Loading what="Loading the task tree…" />}
      {tree && (
        <div class="card-section">
          <ul class="task-tree" data-testid="task-tree" aria-label="Task tree">
            <Node node={tree} />
          </ul>
          <details class="task-text">
            <summary>As text (what toru tasks prints)</summary>
            <pre class="code">{text}</pre>
          </details>
        </div>
      )}
    </section>
  );
}
