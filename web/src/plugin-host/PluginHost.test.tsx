import { afterEach, describe, expect, it, vi } from "vitest";
import type { Identity } from "../api/types";
import { byTestId, mount, settle } from "../test/render";
import type { Registration } from "./lookup";

const loadBundle = vi.fn<(id: string) => Promise<Registration>>();
vi.mock("./loader", () => ({ loadBundle: (id: string) => loadBundle(id), forgetBundle: vi.fn() }));

const { PluginHost } = await import("./PluginHost");

const admin: Identity = { id: null, username: "admin", role: "admin", display_name: "Administrator", source: "environment" };
const client: Identity = { id: 2, username: "alice", role: "client", display_name: "", source: "database" };

afterEach(() => {
  loadBundle.mockReset();
  document.body.replaceChildren();
});

describe("PluginHost", () => {
  it("mounts the bundle into plugin-mount with the api, and unmounts it on leaving", async () => {
    const registration = {
      mount: vi.fn((el: HTMLElement) => {
        el.textContent = "hello from the plugin";
      }),
      unmount: vi.fn((el: HTMLElement) => {
        el.textContent = "";
      }),
    };
    loadBundle.mockResolvedValue(registration);
    const view = mount(<PluginHost id="hello" route="/hello-route" identity={client} />);
    await settle();

    const container = byTestId(view.container, "plugin-mount")!;
    expect(container.dataset.pluginId).toBe("hello");
    expect(container.textContent).toBe("hello from the plugin");
    expect(registration.mount).toHaveBeenCalledOnce();
    const [element, api] = registration.mount.mock.calls[0] as unknown as [HTMLElement, { user: unknown; kv: unknown }];
    expect(element).toBe(container);
    expect(api.user).toEqual({ username: "alice", role: "client" });
    expect(api.kv).toBeTruthy();

    view.unmount();
    expect(registration.unmount).toHaveBeenCalledWith(container);
  });

  it("shows the error panel with the reason when mount throws, and no logs link for clients", async () => {
    loadBundle.mockResolvedValue({
      mount: () => {
        throw new Error("boom");
      },
    });
    const view = mount(<PluginHost id="broken" route="/broken" identity={client} />);
    await settle();
    const panel = byTestId(view.container, "plugin-error")!;
    expect(panel.textContent).toContain("mount() threw: boom");
    expect(panel.querySelector('a[href="/plugins/broken"]')).toBeNull();
    expect(byTestId(view.container, "plugin-mount")).toBeNull();
    view.unmount();
  });

  it("shows why the bundle failed to load, with a link to the logs for administrators", async () => {
    loadBundle.mockRejectedValue(new Error("could not load bundle.js: plugin 'x' has no bundle.js (HTTP 404)"));
    const view = mount(<PluginHost id="x" route="/x" identity={admin} />);
    await settle();
    const panel = byTestId(view.container, "plugin-error")!;
    expect(panel.textContent).toContain("has no bundle.js (HTTP 404)");
    expect(panel.querySelector('a[href="/plugins/x"]')).not.toBeNull();
    view.unmount();
  });

  it("does not mount a bundle that finished loading after the user left", async () => {
    let resolve!: (registration: Registration) => void;
    loadBundle.mockReturnValue(new Promise((r) => (resolve = r)));
    const registration = { mount: vi.fn(), unmount: vi.fn() };
    const view = mount(<PluginHost id="slow" route="/slow" identity={client} />);
    view.unmount();
    resolve(registration);
    await settle();
    expect(registration.mount).not.toHaveBeenCalled();
  });
});
