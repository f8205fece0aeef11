import { describe, expect, it } from "vitest";
import type { AnyPlugin } from "../api/types";
import { allPlugins, backoffDelay, initialStreamState, openablePlugins, streamReducer, type StreamState } from "./reducer";

const plugin = (id: string, over: Partial<AnyPlugin> = {}): AnyPlugin => ({
  id,
  name: id,
  version: "0.1.0",
  author: null,
  icon: null,
  route: `/${id}`,
  enabled: true,
  running: true,
  health: "healthy",
  state: "running",
  ...over,
});

const after = (...actions: Parameters<typeof streamReducer>[1][]): StreamState =>
  actions.reduce(streamReducer, initialStreamState);

describe("streamReducer", () => {
  it("takes a snapshot as the whole list", () => {
    const state = after({ type: "snapshot", plugins: [plugin("a")] }, { type: "snapshot", plugins: [plugin("b")] });
    expect(Object.keys(state.plugins)).toEqual(["b"]);
    expect(state.loaded).toBe(true);
  });

  it("replaces one plugin on a plugin event and adds new ones", () => {
    const state = after(
      { type: "snapshot", plugins: [plugin("a"), plugin("b")] },
      { type: "plugin", plugin: plugin("a", { health: "unhealthy", state: "backoff" }) },
      { type: "plugin", plugin: plugin("c") },
    );
    expect(state.plugins.a.health).toBe("unhealthy");
    expect(Object.keys(state.plugins).sort()).toEqual(["a", "b", "c"]);
  });

  it("drops a plugin on removed", () => {
    const state = after({ type: "snapshot", plugins: [plugin("a"), plugin("b")] }, { type: "removed", id: "a" });
    expect(Object.keys(state.plugins)).toEqual(["b"]);
  });

  it("ignores removed for an unknown id without a new state", () => {
    const state = after({ type: "snapshot", plugins: [plugin("a")] });
    expect(streamReducer(state, { type: "removed", id: "zzz" })).toBe(state);
  });

  it("uses a GET list until the first snapshot, and never over one", () => {
    const early = after({ type: "answer", plugins: [plugin("a")], complete: true });
    expect(early.loaded).toBe(true);
    expect(Object.keys(early.plugins)).toEqual(["a"]);

    const late = after({ type: "snapshot", plugins: [plugin("b")] }, { type: "answer", plugins: [plugin("a")], complete: true });
    expect(Object.keys(late.plugins)).toEqual(["b"]);
  });

  it("merges the status an action answered with", () => {
    const state = after(
      { type: "snapshot", plugins: [plugin("a", { enabled: false, health: "disabled" })] },
      { type: "answer", plugins: [plugin("a")] },
    );
    expect(state.plugins.a.enabled).toBe(true);
  });

  it("forgets everything on reset", () => {
    expect(after({ type: "snapshot", plugins: [plugin("a")] }, { type: "reset" })).toEqual(initialStreamState);
  });
});

describe("selectors", () => {
  it("lists only enabled plugins for the sidebar, by name", () => {
    const state = after({
      type: "snapshot",
      plugins: [plugin("z", { name: "Alpha" }), plugin("a", { name: "beta" }), plugin("m", { name: "Gamma", enabled: false })],
    });
    expect(openablePlugins(state).map((p) => p.id)).toEqual(["z", "a"]);
  });

  it("removes a plugin from the sidebar when an event says it is disabled", () => {
    const state = after(
      { type: "snapshot", plugins: [plugin("a"), plugin("b")] },
      { type: "plugin", plugin: plugin("a", { enabled: false, health: "disabled", state: "stopped" }) },
    );
    expect(openablePlugins(state).map((p) => p.id)).toEqual(["b"]);
    expect(allPlugins(state).map((p) => p.id)).toEqual(["a", "b"]);
  });
});

describe("backoffDelay", () => {
  it("doubles from 1 s up to 30 s", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 20].map(backoffDelay)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});
