// The `api` object a bundle's mount() receives (docs/plugins/frontend.md#the-api-object).

import { api as toru, seg } from "../api/client";
import type { Role } from "../api/types";

export interface PluginApi {
  fetch(path: string, init?: RequestInit): Promise<Response>;
  kv: {
    get(key: string): Promise<string | null>;
    set(key: string, value: string): Promise<string>;
    delete(key: string): Promise<null>;
  };
  navigate(path: string): void;
  showToast(message: string, kind?: "success" | "error" | "info"): void;
  user: { username: string; role: Role };
}

/** `/api/plugins/route/{route}{path}`, for the plugin whose metadata route is `route`. */
export function pluginRouteUrl(route: string, path: string): string {
  const prefix = route.replace(/^\/+/, "").replace(/\/+$/, "");
  const rest = path.startsWith("/") ? path : `/${path}`;
  return `/api/plugins/route/${prefix}${rest}`;
}

interface Deps {
  navigate: (path: string) => void;
  showToast: (message: string, kind?: string) => void;
}

export function createPluginApi(
  plugin: { id: string; route: string },
  user: { username: string; role: Role },
  deps: Deps,
): PluginApi {
  async function pluginFetch(path: string, init: RequestInit = {}): Promise<Response> {
    // X-Toru-Request is what Toru's CSRF rule accepts for plugin routes, so a bundle
    // may POST any body; the header also tells Toru the request came from its UI.
    const headers = new Headers(init.headers);
    headers.set("X-Toru-Request", "1");
    const response = await fetch(pluginRouteUrl(plugin.route, String(path)), {
      ...init,
      headers,
      credentials: init.credentials ?? "same-origin",
    });
    // A 401 from Toru means the session is gone: let the app check and go to /login.
    if (response.status === 401) toru.get("/api/auth/me").catch(() => undefined);
    return response;
  }

  async function kv(action: "get" | "set" | "delete", key: string, value?: string): Promise<string | null> {
    const body = action === "set" ? { action, key, value } : { action, key };
    const answer = await toru.post<{ value: string | null }>(`/api/plugins/${seg(plugin.id)}/kv`, body);
    return answer?.value ?? null;
  }

  return Object.freeze({
    fetch: pluginFetch,
    kv: Object.freeze({
      get: (key: string) => kv("get", key),
      set: (key: string, value: string) => kv("set", key, value) as Promise<string>,
      delete: (key: string) => kv("delete", key) as Promise<null>,
    }),
    navigate: (path: string) => deps.navigate(String(path)),
    showToast: (message: string, kind?: string) => deps.showToast(message, kind),
    user: Object.freeze({ username: user.username, role: user.role }),
  });
}
