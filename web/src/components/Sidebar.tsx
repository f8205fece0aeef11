import type { Identity } from "../api/types";
import type { Route } from "../router/routes";
import { isAdmin } from "../session";
import { useStore } from "../store";
import { openablePlugins, type StreamState } from "../stream/reducer";
import { streamStore } from "../stream/store";
import { HealthDot } from "./HealthDot";
import { Icon } from "./Icon";
import { Link } from "./Link";
import { PluginIcon } from "./PluginIcon";

const connected = (state: StreamState) => state.connected;
const loaded = (state: StreamState) => state.loaded;

interface Item {
  href: string;
  label: string;
  icon: string;
  active: (route: Route) => boolean;
  admin?: boolean;
}

const MAIN: Item[] = [
  { href: "/", label: "Home", icon: "home", active: (r) => r.name === "home" },
  { href: "/plugins", label: "Plugins", icon: "plugins", active: (r) => r.name === "plugins" || r.name === "plugin-detail", admin: true },
  { href: "/users", label: "Users", icon: "users", active: (r) => r.name === "users", admin: true },
  { href: "/supervisor", label: "Supervisor", icon: "supervisor", active: (r) => r.name === "supervisor", admin: true },
  { href: "/account", label: "Account", icon: "account", active: (r) => r.name === "account" },
];

/** The sidebar: the app's own pages, then every plugin this user can open, kept live. */
export function Sidebar({ identity, route }: { identity: Identity; route: Route }) {
  const plugins = useStore(streamStore, openablePlugins);
  const live = useStore(streamStore, connected);
  const known = useStore(streamStore, loaded);
  const admin = isAdmin(identity);
  return (
    <aside id="sidebar" class="sidebar">
      <nav aria-label="Main" class="nav">
        <ul>
          {MAIN.filter((item) => admin || !item.admin).map((item) => (
            <li key={item.href}>
              <Link
                href={item.href}
                class={`nav-link nav-${item.icon}`}
                aria-current={item.active(route) ? "page" : undefined}
              >
                <Icon name={item.icon} class="nav-icon" />
                {item.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <nav aria-label="Plugin pages" class="nav nav-plugins">
        <p class="nav-heading" aria-hidden="true">
          Plugin pages
        </p>
        {plugins.length ? (
          <ul>
            {plugins.map((plugin) => (
              <li key={plugin.id}>
                <Link
                  href={`/plugin/${encodeURIComponent(plugin.id)}`}
                  class="nav-link nav-plugin"
                  data-testid={`sidebar-plugin-${plugin.id}`}
                  data-health={plugin.health}
                  aria-current={route.name === "plugin-view" && route.id === plugin.id ? "page" : undefined}
                >
                  <PluginIcon icon={plugin.icon} name={plugin.name} />
                  <span class="nav-plugin-name">{plugin.name}</span>
                  <HealthDot health={plugin.health} />
                </Link>
              </li>
            ))}
          </ul>
        ) : (
          <p class="nav-empty">{known ? "No plugins enabled yet." : "Loading…"}</p>
        )}
      </nav>
      <p class={`stream-status${live ? " stream-live" : ""}`} role="status">
        <span class="stream-dot" aria-hidden="true" />
        {live ? "Live updates on" : known ? "Reconnecting…" : "Connecting…"}
      </p>
    </aside>
  );
}
