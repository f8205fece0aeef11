import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import type { AnyPlugin, PluginStatus } from "../api/types";
import { usePluginLookup } from "../api/usePluginLookup";
import { EventsTimeline } from "../components/EventsTimeline";
import { HealthDot } from "../components/HealthDot";
import { Link } from "../components/Link";
import { LogsPanel } from "../components/LogsPanel";
import { PageHeading } from "../components/PageHeading";
import { PluginIcon } from "../components/PluginIcon";
import { StateBadge } from "../components/StateBadge";
import { LoadError, Loading } from "../components/Status";
import { Switch } from "../components/Switch";
import { formatDuration, formatTimestamp, formatValue } from "../format";
import { usePluginActions } from "../plugin-actions";
import { useStore } from "../store";
import type { StreamState } from "../stream/reducer";
import { streamStore } from "../stream/store";
import { NotFoundPage } from "./NotFound";

/** Seconds since `started_at`, ticking, while the plugin runs; else the server's figure. */
function useUptime(plugin: AnyPlugin): number | null {
  const [now, setNow] = useState(Date.now());
  const running = plugin.running && plugin.started_at;
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [running]);
  if (running && plugin.started_at) {
    const started = Date.parse(plugin.started_at);
    if (!Number.isNaN(started)) return Math.max(0, (now - started) / 1000);
  }
  return plugin.uptime_s ?? null;
}

/** What changes in a status that is worth re-reading the events for. */
const revisionOf = (p: AnyPlugin) =>
  [p.enabled, p.state, p.health, p.pid, p.restart_count, p.failures_in_a_row, p.last_error, p.started_at].join("|");

/** /plugins/{id}: everything about one plugin, its events and its log. */
export function PluginDetailPage({ id }: { id: string }) {
  const live = useStore(streamStore, useCallback((state: StreamState) => state.plugins[id], [id]));
  const { fetched, failure, retry } = usePluginLookup<PluginStatus>(id);
  const { pending, run } = usePluginActions();

  const plugin: AnyPlugin | null | undefined = live ?? fetched;
  if (plugin === undefined) {
    return failure ? (
      <LoadError message={`Could not load the plugin: ${failure}`} retry={retry} />
    ) : (
      <Loading what="Loading the plugin…" />
    );
  }
  if (plugin === null) return <NotFoundPage reason={`There is no plugin with the id “${id}”.`} />;
  return <Detail plugin={plugin} pending={pending[plugin.id]} run={run} />;
}

interface DetailProps {
  plugin: AnyPlugin;
  pending: string | undefined;
  run: (plugin: AnyPlugin, action: "enable" | "disable" | "restart") => Promise<void>;
}

function Detail({ plugin, pending, run }: DetailProps) {
  const uptime = useUptime(plugin);
  const rows: [string, ComponentChildren][] = [
    ["ID", <code>{plugin.id}</code>],
    ["Version", plugin.version],
    ["Author", plugin.author ?? "—"],
    ["Route", <code>{plugin.route}</code>],
    ["Protocol", plugin.protocol ?? "—"],
    ["Mode", plugin.mode ?? "—"],
    ["Binary", plugin.binary ? <code>{plugin.binary}</code> : "—"],
    ["Socket", plugin.socket ? <code>{plugin.socket}</code> : "—"],
    ["PID", plugin.pid ?? "—"],
    ["Started", plugin.started_at ? formatTimestamp(plugin.started_at) : "—"],
    ["Uptime", plugin.running ? formatDuration(uptime) : "—"],
    ["Restarts", plugin.restart_count ?? 0],
    ["Failures in a row", plugin.failures_in_a_row ?? 0],
  ];
  return (
    <section class="plugin-detail">
      <p class="breadcrumb">
        <Link href="/plugins">
          <span aria-hidden="true">← </span>Plugin list
        </Link>
      </p>
      <header class="page-header">
        <PageHeading title={plugin.name}>
          <PluginIcon icon={plugin.icon} name={plugin.name} />
          <span>{plugin.name}</span>
        </PageHeading>
        <div class="page-actions">
          <StateBadge state={plugin.state} />
          <HealthDot health={plugin.health} label />
          <Switch
            checked={plugin.enabled}
            busy={pending === "enable" || pending === "disable"}
            label={`Enabled: ${plugin.name}`}
            onChange={(on) => void run(plugin, on ? "enable" : "disable")}
          />
          <button
            type="button"
            class="button button-small"
            disabled={!plugin.enabled || pending !== undefined}
            aria-busy={pending === "restart" ? "true" : undefined}
            onClick={() => void run(plugin, "restart")}
          >
            Restart
          </button>
          {plugin.enabled && (
            <Link href={`/plugin/${encodeURIComponent(plugin.id)}`} class="button button-small button-quiet">
              Open its page
            </Link>
          )}
        </div>
      </header>
      {plugin.last_error && (
        <div class="panel panel-warn">
          <p class="panel-title">Last error</p>
          <p class="mono">{plugin.last_error}</p>
        </div>
      )}
      <section class="card-section" aria-labelledby="meta-title">
        <h2 id="meta-title" class="section-title">
          Details
        </h2>
        <dl class="kv">
          {rows.map(([label, value]) => (
            <div key={label} class="kv-row">
              <dt>{label}</dt>
              <dd>{value}</dd>
            </div>
          ))}
          {plugin.extra &&
            Object.entries(plugin.extra).map(([key, value]) => (
              <div key={`extra-${key}`} class="kv-row">
                <dt>{key}</dt>
                <dd>{formatValue(value)}</dd>
              </div>
            ))}
        </dl>
      </section>
      <div class="detail-columns">
        <EventsTimeline id={plugin.id} revision={revisionOf(plugin)} />
        <LogsPanel id={plugin.id} />
      </div>
    </section>
  );
}
