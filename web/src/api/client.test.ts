import { afterEach, describe, expect, it, vi } from "vitest";
import { api, ApiError, errorMessage, request, setUnauthorizedHandler, withQuery } from "./client";

function answer(status: number, body?: unknown, statusText = "") {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    statusText,
    headers: { "Content-Type": "application/json" },
  });
}

afterEach(() => {
  setUnauthorizedHandler(null);
  vi.unstubAllGlobals();
});

describe("errorMessage", () => {
  it("uses the server's own sentence", () => {
    expect(errorMessage(409, "Conflict", { error: "a user named 'alice' already exists" })).toBe(
      "a user named 'alice' already exists",
    );
  });

  it("falls back to the HTTP status when the body has no error", () => {
    expect(errorMessage(502, "Bad Gateway", null)).toBe("the server answered HTTP 502 Bad Gateway");
    expect(errorMessage(500, "", "<html>")).toBe("the server answered HTTP 500");
  });
});

describe("request", () => {
  it("sends Content-Type: application/json on a POST without a body (the CSRF rule)", async () => {
    const fetch = vi.fn().mockResolvedValue(answer(200, { ok: true }));
    vi.stubGlobal("fetch", fetch);
    await api.post("/api/auth/logout");
    const [, init] = fetch.mock.calls[0];
    expect(init.method).toBe("POST");
    expect(init.headers["Content-Type"]).toBe("application/json");
    expect(init.body).toBeUndefined();
    expect(init.credentials).toBe("same-origin");
  });

  it("does not send a Content-Type on GET", async () => {
    const fetch = vi.fn().mockResolvedValue(answer(200, {}));
    vi.stubGlobal("fetch", fetch);
    await api.get("/api/auth/me");
    expect(fetch.mock.calls[0][1].headers["Content-Type"]).toBeUndefined();
  });

  it("sends JSON bodies and resolves to the parsed answer", async () => {
    const fetch = vi.fn().mockResolvedValue(answer(201, { id: 1, username: "alice" }));
    vi.stubGlobal("fetch", fetch);
    const user = await api.post<{ username: string }>("/api/users", { username: "alice" });
    expect(user.username).toBe("alice");
    expect(JSON.parse(fetch.mock.calls[0][1].body)).toEqual({ username: "alice" });
  });

  it("resolves to undefined on 204", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response(null, { status: 204 })));
    await expect(api.del("/api/users/3")).resolves.toBeUndefined();
  });

  it("rejects with an ApiError carrying the status, message and field", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn().mockResolvedValue(answer(400, { error: "password must be at least 8 characters", field: "password" })),
    );
    const error = await api.post("/api/users", {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 400, message: "password must be at least 8 characters", field: "password" });
  });

  it("reports a 401 as an ended session", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(answer(401, { error: "log in first" })));
    const handler = vi.fn();
    setUnauthorizedHandler(handler);
    await expect(api.get("/api/users")).rejects.toMatchObject({ status: 401 });
    expect(handler).toHaveBeenCalledOnce();
  });

  it("leaves a 401 alone when asked to (the login form)", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(answer(401, { error: "wrong username or password" })));
    const handler = vi.fn();
    setUnauthorizedHandler(handler);
    await expect(request("POST", "/api/auth/login", { body: {}, allow401: true })).rejects.toMatchObject({
      message: "wrong username or password",
    });
    expect(handler).not.toHaveBeenCalled();
  });

  it("turns a network failure into an ApiError with status 0", async () => {
    vi.stubGlobal("fetch", vi.fn().mockRejectedValue(new TypeError("Failed to fetch")));
    await expect(api.get("/api/health")).rejects.toMatchObject({ status: 0, name: "ApiError" });
  });

  it("copes with a non-JSON error body", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response("<h1>Bad gateway</h1>", { status: 502, statusText: "Bad Gateway" })));
    await expect(api.get("/api/health")).rejects.toMatchObject({ status: 502, message: "the server answered HTTP 502 Bad Gateway" });
  });
});

describe("withQuery", () => {
  it("adds the parameters that have values", () => {
    expect(withQuery("/api/plugins/x/logs", { page: 0, page_size: 100, level: undefined })).toBe(
      "/api/plugins/x/logs?page=0&page_size=100",
    );
    expect(withQuery("/a?b=1", { c: "d e" })).toBe("/a?b=1&c=d+e");
    expect(withQuery("/a", {})).toBe("/a");
  });
});
