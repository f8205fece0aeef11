// Enable, disable and restart, as the Plugins and plugin detail pages use them:
// one request per plugin at a time, its answer fed into the stream state, a toast either way.

import { useState } from "preact/hooks";
import { api, ApiError, seg } from "./api/client";
import type { AnyPlugin, PluginStatus } from "./api/types";
import { streamStore } from "./stream/store";
import { showToast } from "./toasts";

export type PluginAction = "enable" | "disable" | "restart";

const DONE: Record<PluginAction, string> = { enable: "enabled", disable: "disabled", restart: "restarted" };

/** Run one action and report it; resolves when the server answered. */
export async function runPluginAction(plugin: AnyPlugin, action: PluginAction): Promise<void> {
  try {
    const status = await api.post<PluginStatus>(`/api/plugins/${seg(plugin.id)}/${action}`);
    streamStore.dispatch({ type: "answer", plugins: [status] });
    const note = status.state === "running" || action === "disable" ? "" : ` (now ${status.state})`;
    showToast(`${plugin.name} ${DONE[action]}${note}`, "success");
  } catch (error) {
    // A failed first start (409) still carries the plugin's status: show it.
    const status = error instanceof ApiError ? (error.body?.plugin as PluginStatus | undefined) : undefined;
    if (status && typeof status === "object" && status.id) streamStore.dispatch({ type: "answer", plugins: [status] });
    const verb = action === "restart" ? "restart" : action;
    showToast(`Could not ${verb} ${plugin.name}: ${error instanceof Error ? error.message : String(error)}`, "error");
  }
}

/** Which plugins have a request running, and a way to start one. */
export function usePluginActions() {
  const [pending, setPending] = useState<Record<string, PluginAction>>({});
  async function run(plugin: AnyPlugin, action: PluginAction) {
    if (pending[plugin.id]) return;
    setPending((current) => ({ ...current, [plugin.id]: action }));
    try {
      await runPluginAction(plugin, action);
    } finally {
      setPending((current) => {
        const next = { ...current };
        delete next[plugin.id];
        return next;
      });
    }
  }
  return { pending, run };
}
