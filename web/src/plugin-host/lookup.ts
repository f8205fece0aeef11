// Where a bundle registers itself (docs/plugins/frontend.md): window.ToruPlugins[id]
// first, then the predecessor's window["toru_plugin_" + id]. Pure, so tested.

import type { PluginApi } from "./pluginApi";

export interface Registration {
  mount: (container: HTMLElement, api: PluginApi) => unknown;
  unmount?: (container: HTMLElement) => unknown;
}

type Globals = Record<string, unknown> & { ToruPlugins?: Record<string, unknown> };

export const legacyName = (id: string): string => `toru_plugin_${id}`;

function usable(value: unknown): value is Registration {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { mount?: unknown }).mount === "function"
  );
}

/** The registration for `id`, and where it was found; `null` when there is none with a `mount`. */
export function findRegistration(
  globals: object,
  id: string,
): { registration: Registration; where: string } | null {
  const g = globals as Globals;
  const modern = g.ToruPlugins && typeof g.ToruPlugins === "object" ? g.ToruPlugins[id] : undefined;
  if (usable(modern)) return { registration: modern, where: `window.ToruPlugins[${JSON.stringify(id)}]` };
  const legacy = g[legacyName(id)];
  if (usable(legacy)) return { registration: legacy, where: `window[${JSON.stringify(legacyName(id))}]` };
  return null;
}

/** Forget any registration of `id`, before its bundle is run again. */
export function forgetRegistration(globals: object, id: string): void {
  const g = globals as Globals;
  if (g.ToruPlugins && typeof g.ToruPlugins === "object") delete g.ToruPlugins[id];
  delete g[legacyName(id)];
}

/** Why a loaded bundle is unusable, in words that tell the plugin author what to fix. */
export function missingRegistrationReason(globals: object, id: string): string {
  const g = globals as Globals;
  const found = g.ToruPlugins?.[id] ?? g[legacyName(id)];
  const expected = `window.ToruPlugins[${JSON.stringify(id)}] = { mount, unmount }`;
  if (found === undefined) return `bundle.js ran but registered nothing under the plugin's id; it should set ${expected}`;
  return `bundle.js registered an object without a mount function; it should set ${expected}`;
}
