import { useEffect, useState } from "preact/hooks";
import { api } from "../api/client";
import type { AnyPlugin, PluginList, RejectedBinary } from "../api/types";
import { HealthDot } from "../components/HealthDot";
import { Icon } from "../components/Icon";
import { Link } from "../components/Link";
import { PageHeading } from "../components/PageHeading";
import { PluginIcon } from "../components/PluginIcon";
import { StateBadge } from "../components/StateBadge";
import { EmptyState, LoadError, Loading } from "../components/Status";
import { Switch } from "../components/Switch";
import { usePluginActions } from "../plugin-actions";
import { useStore } from "../store";
import { allPlugins, type StreamState } from "../stream/reducer";
import { streamStore } from "../stream/store";
import { showToast } from "../toasts";

const loaded = (state: StreamState) => state.loaded;
/** Rejected binaries are not in the stream; look again now and then. */
const REJECTED_POLL_MS = 10_000;

/** /plugins: every plugin with its live state, the enable switches, and rejected binaries. */
export function PluginsPage() {
  const plugins = useStore(streamStore, allPlugins);
  const known = useStore(streamStore, loaded);
  const [rejected, setRejected] = useState<RejectedBinary[] | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [scanning, setScanning] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const { pending, run } = usePluginActions();

  useEffect(() => {
    let alive = true;
    const load = () =>
      api.get<PluginList>("/api/plugins").then(
        (list) => {
          if (!alive) return;
          streamStore.dispatch({ type: "answer", plugins: list.plugins, complete: true });
          setRejected(list.rejected ?? []);
          setFailure(null);
        },
        (error: unknown) => alive && setFailure(error instanceof Error ? error.message : String(error)),
      );
    void load();
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void load();
    }, REJECTED_POLL_MS);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [attempt]);

  async function rescan() {
    setScanning(true);
    try {
      const list = await api.post<PluginList>("/api/plugins/rescan");
      streamStore.dispatch({ type: "answer", plugins: list.plugins });
      setRejected(list.rejected ?? []);
      const bad = list.rejected?.length ?? 0;
      showToast(
        `Rescanned: ${list.plugins.length} plugin${list.plugins.length === 1 ? "" : "s"}` +
          (bad ? `, ${bad} rejected binar${bad === 1 ? "y" : "ies"}` : ""),
        "success",
      );
    } catch (error) {
      showToast(`Could not rescan: ${error instanceof Error ? error.message : String(error)}`, "error");
    } finally {
      setScanning(false);
    }
  }

  let body;
  if (!known && !plugins.length) {
    body = failure ? <LoadError message={`Could not load the plugins: ${failure}`} retry={() => setAttempt((n) => n + 1)} /> : <Loading what="Loading plugins…" />;
  } else if (!plugins.length) {
    body = (
      <EmptyState title="No plugins found">
        <p>
          Put <code>*.binary</code> files in the plugins directory (<code>./plugins</code>, or the one set with{" "}
          <code>TORU_PLUGINS_DIR</code>), then choose <strong>Rescan</strong>. New plugins start disabled.
        </p>
      </EmptyState>
    );
  } else {
    body = (
      <div class="table-wrap">
        <table class="table plugins-table">
          <caption class="visually-hidden">Installed plugins</caption>
          <thead>
            <tr>
              <th scope="col">Plugin</th>
              <th scope="col">State</th>
              <th scope="col">PID</th>
              <th scope="col">Restarts</th>
              <th scope="col">Health</th>
              <th scope="col">Enabled</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {plugins.map((plugin) => (
              <PluginRow key={plugin.id} plugin={plugin} pending={pending[plugin.id]} run={run} />
            ))}
          </tbody>
        </table>
      </div>
    );
  }

  return (
    <section>
      <header class="page-header">
        <PageHeading title="Plugins">Plugins</PageHeading>
        <div class="page-actions">
          <button type="button" class="button" onClick={rescan} disabled={scanning} aria-busy={scanning ? "true" : undefined}>
            <Icon name="rescan" class={scanning ? "spinning" : undefined} />
            Rescan
          </button>
        </div>
      </header>
      <p class="lead">Enable, disable and restart plugins. States update live.</p>
      {body}
      {rejected && rejected.length > 0 && (
        <section class="rejected" aria-labelledby="rejected-title">
          <h2 id="rejected-title" class="section-title">
            Rejected binaries
          </h2>
          <p class="muted">These files in the plugins directory cannot be used. Fix them and rescan.</p>
          <ul class="rejected-list">
            {rejected.map((item) => (
              <li key={item.file} class="rejected-item" data-testid={`rejected-${item.file}`}>
                <code class="rejected-file">{item.file}</code>
                <span class="rejected-reason">{item.reason}</span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </section>
  );
}

interface RowProps {
  plugin: AnyPlugin;
  pending: string | undefined;
  run: (plugin: AnyPlugin, action: "enable" | "disable" | "restart") => Promise<void>;
}

function PluginRow({ plugin, pending, run }: RowProps) {
  const id = plugin.id;
  return (
    <tr data-testid={`plugin-row-${id}`} class={plugin.enabled ? "" : "row-disabled"}>
      <th scope="row" class="cell-plugin">
        <div class="cell-flex">
          <PluginIcon icon={plugin.icon} name={plugin.name} />
          <span class="cell-plugin-text">
            <Link href={`/plugins/${encodeURIComponent(id)}`} class="row-link">
              {plugin.name}
            </Link>
            <span class="cell-sub">
              {id} · v{plugin.version}
              {plugin.author ? ` · ${plugin.author}` : ""}
            </span>
          </span>
        </div>
      </th>
      <td data-label="State">
        <StateBadge state={plugin.state} testid={`plugin-state-${id}`} />
      </td>
      <td data-label="PID" class="num">
        <span data-testid={`plugin-pid-${id}`}>{plugin.pid ?? "—"}</span>
      </td>
      <td data-label="Restarts" class="num">
        {plugin.restart_count ?? 0}
      </td>
      <td data-label="Health">
        <HealthDot health={plugin.health} label />
      </td>
      <td data-label="Enabled">
        <Switch
          checked={plugin.enabled}
          busy={pending === "enable" || pending === "disable"}
          label={`Enabled: ${plugin.name}`}
          testid={`plugin-switch-${id}`}
          onChange={(on) => void run(plugin, on ? "enable" : "disable")}
        />
      </td>
      <td class="cell-actions">
        <button
          type="button"
          class="button button-small"
          disabled={!plugin.enabled || pending !== undefined}
          aria-busy={pending === "restart" ? "true" : undefined}
          onClick={() => void run(plugin, "restart")}
        >
          Restart<span class="visually-hidden"> {plugin.name}</span>
        </button>
      </td>
    </tr>
  );
}
