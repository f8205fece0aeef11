import { describe, expect, it } from "vitest";
import { findRegistration, forgetRegistration, missingRegistrationReason } from "./lookup";

const mount = () => undefined;

describe("findRegistration", () => {
  it("finds window.ToruPlugins[id]", () => {
    const reg = { mount };
    const found = findRegistration({ ToruPlugins: { notes: reg } }, "notes");
    expect(found?.registration).toBe(reg);
    expect(found?.where).toBe('window.ToruPlugins["notes"]');
  });

  it("accepts the predecessor's window.toru_plugin_<id>", () => {
    const reg = { mount };
    expect(findRegistration({ toru_plugin_notes: reg }, "notes")?.registration).toBe(reg);
  });

  it("prefers window.ToruPlugins over the old name", () => {
    const modern = { mount };
    const legacy = { mount: () => "legacy" };
    expect(findRegistration({ ToruPlugins: { notes: modern }, toru_plugin_notes: legacy }, "notes")?.registration).toBe(modern);
  });

  it("falls back to the old name when ToruPlugins has no mount for the id", () => {
    const legacy = { mount };
    expect(findRegistration({ ToruPlugins: { notes: {} }, toru_plugin_notes: legacy }, "notes")?.registration).toBe(legacy);
  });

  it("does not confuse plugins", () => {
    expect(findRegistration({ ToruPlugins: { other: { mount } }, toru_plugin_other: { mount } }, "notes")).toBeNull();
  });

  it("refuses a registration without a mount function", () => {
    expect(findRegistration({ ToruPlugins: { notes: { mount: "no" } } }, "notes")).toBeNull();
    expect(missingRegistrationReason({ ToruPlugins: { notes: {} } }, "notes")).toMatch(/without a mount function/);
    expect(missingRegistrationReason({}, "notes")).toMatch(/registered nothing/);
  });
});

describe("forgetRegistration", () => {
  it("removes both kinds of registration of that id only", () => {
    const globals: Record<string, unknown> = {
      ToruPlugins: { notes: { mount }, other: { mount } },
      toru_plugin_notes: { mount },
    };
    forgetRegistration(globals, "notes");
    expect(globals.toru_plugin_notes).toBeUndefined();
    expect(Object.keys(globals.ToruPlugins as object)).toEqual(["other"]);
  });
});
