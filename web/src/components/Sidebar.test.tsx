import { afterEach, describe, expect, it } from "vitest";
import { act } from "preact/test-utils";
import type { AnyPlugin, Identity } from "../api/types";
import { streamStore } from "../stream/store";
import { byTestId, mount } from "../test/render";
import { Sidebar } from "./Sidebar";

const plugin = (id: string, over: Partial<AnyPlugin> = {}): AnyPlugin => ({
  id,
  name: `Plugin ${id}`,
  version: "1",
  author: null,
  icon: "🐍",
  route: `/${id}`,
  enabled: true,
  running: true,
  health: "healthy",
  state: "running",
  ...over,
});

const client: Identity = { id: 2, username: "alice", role: "client", display_name: "", source: "database" };
const admin: Identity = { ...client, role: "admin" };

afterEach(() => {
  streamStore.dispatch({ type: "reset" });
  document.body.replaceChildren();
});

const links = (nav: Element) => [...nav.querySelectorAll("a")].map((a) => a.textContent);

describe("Sidebar", () => {
  it("shows clients Home and Account only", () => {
    const view = mount(<Sidebar identity={client} route={{ name: "home" }} />);
    const main = view.container.querySelector('nav[aria-label="Main"]')!;
    expect(links(main)).toEqual(["Home", "Account"]);
    expect(main.querySelector('[aria-current="page"]')?.textContent).toBe("Home");
  });

  it("shows administrators every page", () => {
    const view = mount(<Sidebar identity={admin} route={{ name: "plugin-detail", id: "x" }} />);
    const main = view.container.querySelector('nav[aria-label="Main"]')!;
    expect(links(main)).toEqual(["Home", "Plugins", "Users", "Supervisor", "Account"]);
    expect(main.querySelector('[aria-current="page"]')?.textContent).toBe("Plugins");
  });

  it("lists enabled plugins live, with their health, and drops disabled ones", () => {
    const view = mount(<Sidebar identity={client} route={{ name: "home" }} />);
    act(() => streamStore.dispatch({ type: "snapshot", plugins: [plugin("a"), plugin("b", { enabled: false, health: "disabled" })] }));
    const nav = view.container.querySelector('nav[aria-label="Plugin pages"]')!;
    const link = byTestId(nav, "sidebar-plugin-a")!;
    expect(link.getAttribute("href")).toBe("/plugin/a");
    expect(link.dataset.health).toBe("healthy");
    expect(link.textContent).toContain("(healthy)");
    expect(byTestId(nav, "sidebar-plugin-b")).toBeNull();

    act(() => streamStore.dispatch({ type: "plugin", plugin: plugin("a", { health: "unhealthy", state: "backoff" }) }));
    expect(byTestId(nav, "sidebar-plugin-a")!.dataset.health).toBe("unhealthy");

    act(() => streamStore.dispatch({ type: "plugin", plugin: plugin("a", { enabled: false, health: "disabled" }) }));
    expect(byTestId(nav, "sidebar-plugin-a")).toBeNull();

    act(() => streamStore.dispatch({ type: "plugin", plugin: plugin("b") }));
    expect(byTestId(nav, "sidebar-plugin-b")).not.toBeNull();
    act(() => streamStore.dispatch({ type: "removed", id: "b" }));
    expect(byTestId(nav, "sidebar-plugin-b")).toBeNull();
  });
});
