import { describe, expect, it } from "vitest";
import { eventSummary } from "./EventsTimeline";

const event = (name: string, details: Record<string, unknown> | null) => ({
  id: 1,
  plugin_id: "p",
  event: name,
  details,
  timestamp: "2026-11-25T20:00:00.284Z",
});

describe("eventSummary", () => {
  it("says how a crash ended", () => {
    expect(
      eventSummary(event("crashed", { pid: 28648, exit: "killed by SIGKILL", returncode: -9, uptime_s: 16.629, stderr_tail: ["x"] })),
    ).toBe("killed by SIGKILL · exit code -9 · after 16.629 s · pid 28648");
  });

  it("covers backoff, stop and ready", () => {
    expect(eventSummary(event("backoff", { delay: 1.0, attempt: 1, reason: "killed by SIGKILL while running" }))).toBe(
      "killed by SIGKILL while running · retry in 1 s · failure 1 in a row",
    );
    expect(eventSummary(event("stopped", { pid: 3, how: "shutdown message", exit: "exited 0", duration_ms: 51.4 }))).toBe(
      "exited 0 · by shutdown message · took 51 ms · pid 3",
    );
    expect(eventSummary(event("ready", { pid: 3, after_ms: 780.6, mode: "modern" }))).toBe("ready after 781 ms · modern · pid 3");
  });

  it("is empty for events without details", () => {
    expect(eventSummary(event("enabled", null))).toBe("");
    expect(eventSummary(event("enabled", {}))).toBe("");
  });
});
