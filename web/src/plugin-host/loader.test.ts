import { afterEach, describe, expect, it, vi } from "vitest";
import { bundleOutdated, forgetBundle, forgetOutdatedBundles, isBundleLoaded, loadBundle } from "./loader";

type Globals = Record<string, unknown> & { ToruPlugins?: Record<string, unknown> };
const globals = window as unknown as Globals;

const scripts = (id: string) =>
  [...document.querySelectorAll<HTMLScriptElement>("script[data-toru-plugin]")].filter((s) => s.dataset.toruPlugin === id);

/** jsdom does not fetch scripts: play the browser's part for the newest one. */
function runNewest(id: string, register: () => void) {
  const list = scripts(id);
  register();
  list[list.length - 1].onload?.(new Event("load"));
}

afterEach(() => {
  document.head.replaceChildren();
  delete globals.ToruPlugins;
  for (const key of Object.keys(globals)) if (key.startsWith("toru_plugin_")) delete globals[key];
  forgetBundle("notes");
  vi.unstubAllGlobals();
});

describe("loadBundle", () => {
  it("adds a classic script for the plugin's bundle and resolves to its registration", async () => {
    const promise = loadBundle("notes");
    const [script] = scripts("notes");
    expect(script.getAttribute("src")).toBe("/api/plugins/notes/bundle.js");
    expect(script.type).toBe("");
    const registration = { mount: () => undefined };
    runNewest("notes", () => (globals.ToruPlugins = { notes: registration }));
    await expect(promise).resolves.toBe(registration);
  });

  it("runs a bundle once, and after forgetBundle again without the old script or registration", async () => {
    const first = loadBundle("notes");
    runNewest("notes", () => (globals.toru_plugin_notes = { mount: () => "old" }));
    await first;
    expect(loadBundle("notes")).toBe(first);
    expect(scripts("notes")).toHaveLength(1);

    forgetBundle("notes");
    const second = loadBundle("notes");
    // The old element and the old registration are gone before the new script runs.
    expect(scripts("notes")).toHaveLength(1);
    expect(globals.toru_plugin_notes).toBeUndefined();
    const fresh = { mount: () => "new" };
    runNewest("notes", () => (globals.ToruPlugins = { notes: fresh }));
    await expect(second).resolves.toBe(fresh);
  });

  it("rejects when the bundle registers nothing, and tries again next time", async () => {
    const promise = loadBundle("notes");
    runNewest("notes", () => undefined);
    await expect(promise).rejects.toThrow(/registered nothing under the plugin's id/);
    expect(isBundleLoaded("notes")).toBe(false);
  });

  it("reports the server's reason when the script cannot be loaded", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn().mockResolvedValue(new Response('{"error":"no enabled plugin with id \'notes\'"}', { status: 404 })),
    );
    const promise = loadBundle("notes");
    scripts("notes")[0].onerror?.(new Event("error"));
    await expect(promise).rejects.toThrow("could not load bundle.js: no enabled plugin with id 'notes' (HTTP 404)");
    expect(scripts("notes")).toHaveLength(0);
  });
});

describe("when to run a bundle again", () => {
  it("after a disable, a removal or a new version; not after a restart", () => {
    const on = { enabled: true, version: "1.0" };
    expect(bundleOutdated(on, { enabled: true, version: "1.0" })).toBe(false);
    expect(bundleOutdated(on, { enabled: false, version: "1.0" })).toBe(true);
    expect(bundleOutdated(on, undefined)).toBe(true);
    expect(bundleOutdated(on, { enabled: true, version: "1.1" })).toBe(true);
  });

  it("forgets only the bundles a change made outdated", async () => {
    const promise = loadBundle("notes");
    runNewest("notes", () => (globals.ToruPlugins = { notes: { mount: () => undefined } }));
    await promise;
    const before = { notes: { enabled: true, version: "1" } };
    forgetOutdatedBundles(before, { notes: { enabled: true, version: "1" } });
    expect(isBundleLoaded("notes")).toBe(true);
    forgetOutdatedBundles(before, { notes: { enabled: false, version: "1" } });
    expect(isBundleLoaded("notes")).toBe(false);
  });
});
