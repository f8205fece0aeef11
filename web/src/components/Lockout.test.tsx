import { afterEach, describe, expect, it, vi } from "vitest";
import { act } from "preact/test-utils";
import { ApiError } from "../api/client";
import { mount } from "../test/render";
import { lockEnd, LockoutMessage } from "./Lockout";

afterEach(() => {
  vi.useRealTimers();
  document.body.replaceChildren();
});

describe("lockEnd", () => {
  it("reads locked_until, else retry_after", () => {
    const now = Date.parse("2026-11-25T18:37:13.221Z");
    const withUntil = new ApiError(429, "too many", { locked_until: "2026-11-25T18:38:13.221Z", retry_after: 60 });
    expect(lockEnd(withUntil, now)).toBe(now + 60_000);
    expect(lockEnd(new ApiError(429, "too many", { retry_after: 30 }), now)).toBe(now + 30_000);
    expect(lockEnd(new ApiError(429, "too many", null), now)).toBe(now + 60_000);
  });
});

describe("LockoutMessage", () => {
  it("counts down every second and says when the lock has ended", () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.parse("2026-11-25T18:37:00.000Z"));
    const view = mount(<LockoutMessage until={Date.parse("2026-11-25T18:38:05.000Z")} />);
    expect(view.container.textContent).toBe("too many failed logins; try again in 1 minute 5 seconds");
    act(() => void vi.advanceTimersByTime(6000));
    expect(view.container.textContent).toBe("too many failed logins; try again in 59 seconds");
    act(() => void vi.advanceTimersByTime(59_000));
    expect(view.container.textContent).toBe("the lock has ended; you can try again now");
    view.unmount();
  });
});
