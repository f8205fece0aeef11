import { EmptyState, Loading } from "../components/Status";
import { HealthDot } from "../components/HealthDot";
import { Link } from "../components/Link";
import { PageHeading } from "../components/PageHeading";
import { PluginIcon } from "../components/PluginIcon";
import { isAdmin, sessionStore } from "../session";
import { useStore } from "../store";
import { openablePlugins, type StreamState } from "../stream/reducer";
import { streamStore } from "../stream/store";

const loaded = (state: StreamState) => state.loaded;
const admin = (state: ReturnType<typeof sessionStore.getState>) => isAdmin(state);

/** Home: a card for every plugin this user can open. */
export function HomePage() {
  const plugins = useStore(streamStore, openablePlugins);
  const known = useStore(streamStore, loaded);
  const isAdministrator = useStore(sessionStore, admin);
  return (
    <section>
      <PageHeading title="Home">Home</PageHeading>
      <p class="lead">Your plugins. Choose one to open its page.</p>
      {!known && !plugins.length ? (
        <Loading what="Loading plugins…" />
      ) : plugins.length ? (
        <ul class="cards">
          {plugins.map((plugin) => (
            <li key={plugin.id}>
              <Link href={`/plugin/${encodeURIComponent(plugin.id)}`} class="card card-link" data-testid={`home-plugin-${plugin.id}`}>
                <PluginIcon icon={plugin.icon} name={plugin.name} large />
                <span class="card-text">
                  <span class="card-title">{plugin.name}</span>
                  <span class="card-meta">
                    v{plugin.version}
                    {plugin.author ? ` · ${plugin.author}` : ""}
                  </span>
                </span>
                <HealthDot health={plugin.health} label />
              </Link>
            </li>
          ))}
        </ul>
      ) : (
        <EmptyState title="No plugins to open yet">
          {isAdministrator ? (
            <p>
              Plugins appear here once they are enabled. Turn them on in{" "}
              <Link href="/plugins">plugin management</Link>.
            </p>
          ) : (
            <p>Plugins appear here once an administrator enables them. Check back later.</p>
          )}
        </EmptyState>
      )}
    </section>
  );
}
