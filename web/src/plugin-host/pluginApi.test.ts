import { afterEach, describe, expect, it, vi } from "vitest";
import { createPluginApi, pluginRouteUrl } from "./pluginApi";

afterEach(() => vi.unstubAllGlobals());

const user = { username: "alice", role: "client" as const };
const deps = () => ({ navigate: vi.fn(), showToast: vi.fn() });

describe("pluginRouteUrl", () => {
  it("prefixes the plugin's route, not its id", () => {
    expect(pluginRouteUrl("/hello-python", "/")).toBe("/api/plugins/route/hello-python/");
    expect(pluginRouteUrl("/hello-python", "/counter?x=1")).toBe("/api/plugins/route/hello-python/counter?x=1");
    expect(pluginRouteUrl("hello-python", "counter")).toBe("/api/plugins/route/hello-python/counter");
  });
});

describe("api.fetch", () => {
  it("always adds X-Toru-Request and keeps the bundle's own headers and init", async () => {
    const fetch = vi.fn().mockResolvedValue(new Response("{}", { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    const api = createPluginApi({ id: "hello-plugin-python", route: "/hello-python" }, user, deps());
    const response = await api.fetch("/counter/increment", { method: "POST", headers: { "X-Custom": "1" }, body: "raw" });
    expect(response.status).toBe(200);
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe("/api/plugins/route/hello-python/counter/increment");
    expect(init.method).toBe("POST");
    expect(init.body).toBe("raw");
    expect(init.headers.get("X-Toru-Request")).toBe("1");
    expect(init.headers.get("X-Custom")).toBe("1");
    expect(init.credentials).toBe("same-origin");
  });

  it("adds the header on a GET without init too, and resolves non-2xx answers as they are", async () => {
    const fetch = vi.fn().mockResolvedValue(new Response('{"error":"x"}', { status: 503 }));
    vi.stubGlobal("fetch", fetch);
    const api = createPluginApi({ id: "p", route: "/p" }, user, deps());
    const response = await api.fetch("/");
    expect(response.status).toBe(503);
    expect(fetch.mock.calls[0][1].headers.get("X-Toru-Request")).toBe("1");
  });
});

describe("api.kv", () => {
  it("posts {action, key, value} as JSON to the plugin's KV endpoint", async () => {
    const fetch = vi.fn().mockResolvedValue(new Response('{"value":"dark"}', { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    const api = createPluginApi({ id: "notes", route: "/notes" }, user, deps());
    await expect(api.kv.set("theme", "dark")).resolves.toBe("dark");
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe("/api/plugins/notes/kv");
    expect(init.method).toBe("POST");
    expect(init.headers["Content-Type"]).toBe("application/json");
    expect(JSON.parse(init.body)).toEqual({ action: "set", key: "theme", value: "dark" });
  });

  it("resolves get to null when unset, and sends no value for get and delete", async () => {
    const fetch = vi.fn().mockImplementation(() => Promise.resolve(new Response('{"value":null}', { status: 200 })));
    vi.stubGlobal("fetch", fetch);
    const api = createPluginApi({ id: "notes", route: "/notes" }, user, deps());
    await expect(api.kv.get("missing")).resolves.toBeNull();
    await expect(api.kv.delete("missing")).resolves.toBeNull();
    expect(JSON.parse(fetch.mock.calls[0][1].body)).toEqual({ action: "get", key: "missing" });
    expect(JSON.parse(fetch.mock.calls[1][1].body)).toEqual({ action: "delete", key: "missing" });
  });

  it("rejects with an Error carrying Toru's message", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn().mockResolvedValue(new Response('{"error":"key must be 1 to 256 bytes of UTF-8, got 0"}', { status: 400 })),
    );
    const api = createPluginApi({ id: "notes", route: "/notes" }, user, deps());
    const error = await api.kv.get("").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe("key must be 1 to 256 bytes of UTF-8, got 0");
  });
});

describe("the rest of the api object", () => {
  it("passes navigate and showToast through and exposes a frozen user", () => {
    const d = deps();
    const api = createPluginApi({ id: "p", route: "/p" }, { username: "bob", role: "admin" }, d);
    api.navigate("/plugin/other");
    api.showToast("Saved", "success");
    expect(d.navigate).toHaveBeenCalledWith("/plugin/other");
    expect(d.showToast).toHaveBeenCalledWith("Saved", "success");
    expect(api.user).toEqual({ username: "bob", role: "admin" });
    expect(Object.isFrozen(api.user)).toBe(true);
  });
});
