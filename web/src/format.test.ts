import { describe, expect, it } from "vitest";
import { formatCountdown, formatDuration, secondsUntil } from "./format";

describe("secondsUntil", () => {
  const now = Date.parse("2026-11-25T18:37:13.221Z");

  it("rounds up, so the countdown reaches 0 only when the lock has ended", () => {
    expect(secondsUntil("2026-11-25T18:38:13.221Z", now)).toBe(60);
    expect(secondsUntil("2026-11-25T18:37:13.300Z", now)).toBe(1);
  });

  it("never goes below 0, and treats nonsense as over", () => {
    expect(secondsUntil("2026-11-25T18:30:00.000Z", now)).toBe(0);
    expect(secondsUntil("not a time", now)).toBe(0);
  });
});

describe("formatCountdown", () => {
  it("says seconds, then minutes and seconds", () => {
    expect(formatCountdown(0)).toBe("0 seconds");
    expect(formatCountdown(1)).toBe("1 second");
    expect(formatCountdown(59)).toBe("59 seconds");
    expect(formatCountdown(60)).toBe("1 minute");
    expect(formatCountdown(61)).toBe("1 minute 1 second");
    expect(formatCountdown(125)).toBe("2 minutes 5 seconds");
    expect(formatCountdown(59.2)).toBe("1 minute");
  });
});

describe("formatDuration", () => {
  it("is short and coarse", () => {
    expect(formatDuration(null)).toBe("—");
    expect(formatDuration(42.9)).toBe("42 s");
    expect(formatDuration(256.7)).toBe("4 min 16 s");
    expect(formatDuration(3 * 3600 + 120)).toBe("3 h 2 min");
    expect(formatDuration(2 * 86400 + 5 * 3600)).toBe("2 d 5 h");
  });
});
