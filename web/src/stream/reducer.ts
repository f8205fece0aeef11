// The state of GET /api/stream: every plugin this user may see, by id. Pure, so tested.

import type { AnyPlugin } from "../api/types";

export interface StreamState {
  /** Plugins by id. Disabled ones stay for administrators; selectors filter. */
  plugins: Record<string, AnyPlugin>;
  /** A full list arrived (a snapshot, or GET /api/plugins before it): absent means unknown. */
  loaded: boolean;
  /** The EventSource is open. */
  connected: boolean;
}

export type StreamAction =
  | { type: "snapshot"; plugins: AnyPlugin[] }
  | { type: "plugin"; plugin: AnyPlugin }
  | { type: "removed"; id: string }
  /**
   * Statuses from an API answer. `complete` (GET /api/plugins) stands in for a snapshot
   * until one arrives and is ignored after; otherwise (enable, restart…) each is merged.
   */
  | { type: "answer"; plugins: AnyPlugin[]; complete?: boolean }
  | { type: "connected"; connected: boolean }
  | { type: "reset" };

export const initialStreamState: StreamState = { plugins: {}, loaded: false, connected: false };

function byId(plugins: AnyPlugin[]): Record<string, AnyPlugin> {
  const result: Record<string, AnyPlugin> = {};
  for (const plugin of plugins) result[plugin.id] = plugin;
  return result;
}

export function streamReducer(state: StreamState, action: StreamAction): StreamState {
  switch (action.type) {
    case "snapshot":
      return { ...state, plugins: byId(action.plugins), loaded: true };
    case "plugin":
      return { ...state, plugins: { ...state.plugins, [action.plugin.id]: action.plugin } };
    case "removed": {
      if (!(action.id in state.plugins)) return state;
      const plugins = { ...state.plugins };
      delete plugins[action.id];
      return { ...state, plugins };
    }
    case "answer":
      if (action.complete) return state.loaded ? state : { ...state, plugins: byId(action.plugins), loaded: true };
      return { ...state, plugins: { ...state.plugins, ...byId(action.plugins) } };
    case "connected":
      return action.connected === state.connected ? state : { ...state, connected: action.connected };
    case "reset":
      return initialStreamState;
  }
}

const byName = (a: AnyPlugin, b: AnyPlugin) =>
  a.name.localeCompare(b.name, undefined, { sensitivity: "base" }) || a.id.localeCompare(b.id);

/** The plugins a user can open (sidebar, Home): enabled ones, by name. */
export function openablePlugins(state: StreamState): AnyPlugin[] {
  return Object.values(state.plugins).filter((plugin) => plugin.enabled).sort(byName);
}

/** Every plugin, by id (the Plugins page). */
export function allPlugins(state: StreamState): AnyPlugin[] {
  return Object.values(state.plugins).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Reconnection delay after `attempt` failures in a row: 1, 2, 4 … 30 s. */
export function backoffDelay(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt));
}
