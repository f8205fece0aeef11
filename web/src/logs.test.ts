import { describe, expect, it } from "vitest";
import { extraFields, pageRecords, passesLevel, recordLevel } from "./logs";

describe("level filter", () => {
  it("keeps records at the chosen level or above, like the server", () => {
    const levels = ["debug", "info", "warn", "warning", "error", "critical"];
    const kept = (choice: Parameters<typeof passesLevel>[1]) =>
      levels.filter((level) => passesLevel({ level }, choice));
    expect(kept("all")).toEqual(levels);
    expect(kept("info")).toEqual(["info", "warn", "warning", "error", "critical"]);
    expect(kept("warn")).toEqual(["warn", "warning", "error", "critical"]);
    expect(kept("error")).toEqual(["error", "critical"]);
  });

  it("counts a record without a level (or an unknown one) as info", () => {
    expect(recordLevel({ message: "x" })).toBe("info");
    expect(passesLevel({ message: "x" }, "warn")).toBe(false);
    expect(passesLevel({ level: "NOTICE" }, "info")).toBe(true);
    expect(recordLevel({ level: "ERROR" })).toBe("error");
  });
});

describe("records", () => {
  it("reads entries, or logs from an older answer", () => {
    expect(pageRecords({ entries: [{ message: "a" }] })).toEqual([{ message: "a" }]);
    expect(pageRecords({ logs: [{ message: "b" }] })).toEqual([{ message: "b" }]);
    expect(pageRecords({})).toEqual([]);
  });

  it("puts everything but time, level, stream and message in the expandable part", () => {
    expect(extraFields({ timestamp: "t", level: "info", message: "m", stream: "stdout", pid: 3, plugin_id: "p" })).toEqual([
      ["pid", 3],
      ["plugin_id", "p"],
    ]);
  });
});
