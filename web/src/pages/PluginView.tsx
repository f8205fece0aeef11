import { useCallback } from "preact/hooks";
import type { AnyPlugin, Identity } from "../api/types";
import { usePluginLookup } from "../api/usePluginLookup";
import { HealthDot } from "../components/HealthDot";
import { PageHeading } from "../components/PageHeading";
import { PluginIcon } from "../components/PluginIcon";
import { LoadError, Loading } from "../components/Status";
import { PluginHost } from "../plugin-host/PluginHost";
import { useStore } from "../store";
import type { StreamState } from "../stream/reducer";
import { streamStore } from "../stream/store";
import { NotFoundPage } from "./NotFound";

const loaded = (state: StreamState) => state.loaded;

/**
 * /plugin/{id}: the plugin's own page. Known and enabled → its bundle, mounted;
 * otherwise (or as soon as the stream says it was disabled or removed) the 404 page.
 */
export function PluginViewPage({ id, identity }: { id: string; identity: Identity }) {
  const fromStream = useStore(streamStore, useCallback((state: StreamState) => state.plugins[id], [id]));
  const known = useStore(streamStore, loaded);
  // Before the stream's first list, ask for this one plugin.
  const { fetched, failure, retry } = usePluginLookup<AnyPlugin>(id, known);

  // Once the stream is known, a plugin missing from it is disabled or unknown (404), not loading.
  const plugin = known ? (fromStream ?? null) : (fromStream ?? fetched);
  if (plugin === undefined) {
    if (failure)
      return (
        <LoadError
          message={`Could not look up the plugin: ${failure}`}
          retry={retry}
        />
      );
    return <Loading what="Looking up the plugin…" />;
  }
  if (!plugin || !plugin.enabled) return <NotFoundPage />;
  return (
    <section class="plugin-view">
      <header class="page-header">
        <PageHeading title={plugin.name}>
          <PluginIcon icon={plugin.icon} name={plugin.name} />
          <span>{plugin.name}</span>
        </PageHeading>
        <div class="page-header-meta">
          <HealthDot health={plugin.health} label />
          <span class="muted">v{plugin.version}</span>
        </div>
      </header>
      <PluginHost id={plugin.id} route={plugin.route} identity={identity} />
    </section>
  );
}
