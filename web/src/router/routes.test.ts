import { describe, expect, it } from "vitest";
import { isAdminRoute, loginPath, matchRoute, nextAfterLogin } from "./routes";

describe("matchRoute", () => {
  it("knows the app's pages", () => {
    expect(matchRoute("/")).toEqual({ name: "home" });
    expect(matchRoute("/login")).toEqual({ name: "login" });
    expect(matchRoute("/plugins")).toEqual({ name: "plugins" });
    expect(matchRoute("/users")).toEqual({ name: "users" });
    expect(matchRoute("/account")).toEqual({ name: "account" });
    expect(matchRoute("/supervisor")).toEqual({ name: "supervisor" });
  });

  it("tells a plugin's page from its admin detail", () => {
    expect(matchRoute("/plugin/hello-plugin-python")).toEqual({ name: "plugin-view", id: "hello-plugin-python" });
    expect(matchRoute("/plugins/hello-plugin-python")).toEqual({ name: "plugin-detail", id: "hello-plugin-python" });
  });

  it("ignores a trailing slash and decodes ids", () => {
    expect(matchRoute("/plugins/")).toEqual({ name: "plugins" });
    expect(matchRoute("/plugin/a%20b/")).toEqual({ name: "plugin-view", id: "a b" });
  });

  it("sends anything else to the 404 page", () => {
    for (const path of ["/nope", "/plugin", "/plugin/a/b", "/plugins/a/logs", "/plugin/%E0%A4%A", "/login/x"]) {
      expect(matchRoute(path)).toEqual({ name: "not-found" });
    }
  });

  it("marks administrators' pages", () => {
    expect(isAdminRoute(matchRoute("/plugins/x"))).toBe(true);
    expect(isAdminRoute(matchRoute("/supervisor"))).toBe(true);
    expect(isAdminRoute(matchRoute("/plugin/x"))).toBe(false);
    expect(isAdminRoute(matchRoute("/account"))).toBe(false);
  });
});

describe("after login", () => {
  it("returns to where the user was going", () => {
    expect(loginPath("/plugins/x?tab=logs")).toBe("/login?next=%2Fplugins%2Fx%3Ftab%3Dlogs");
    expect(nextAfterLogin("?next=%2Fplugins%2Fx%3Ftab%3Dlogs")).toBe("/plugins/x?tab=logs");
  });

  it("goes Home otherwise, and never off the site or back to /login", () => {
    expect(loginPath("/")).toBe("/login");
    expect(nextAfterLogin("")).toBe("/");
    expect(nextAfterLogin("?next=https%3A%2F%2Fevil.example")).toBe("/");
    expect(nextAfterLogin("?next=%2F%2Fevil.example")).toBe("/");
    expect(nextAfterLogin("?next=%2F%5Cevil.example")).toBe("/");
    expect(nextAfterLogin("?next=%2Flogin")).toBe("/");
  });
});
