import { afterEach, describe, expect, it, vi } from "vitest";
import { act } from "preact/test-utils";
import { showToast, toastStore } from "../toasts";
import { byTestId, mount } from "../test/render";
import { Toasts } from "./Toasts";

afterEach(() => {
  vi.useRealTimers();
  for (const toast of toastStore.getState()) toastStore.dispatch({ type: "dismiss", id: toast.id });
  document.body.replaceChildren();
});

describe("Toasts", () => {
  it("shows each toast with its kind in a live region, and lets it go after a while", () => {
    vi.useFakeTimers();
    const view = mount(<Toasts />);
    const region = byTestId(view.container, "toasts")!;
    expect(region.getAttribute("aria-live")).toBe("polite");

    act(() => {
      showToast("Saved", "success");
      showToast("Could not save: disk full", "error");
      showToast("Hello", "shouting");
    });
    const toasts = [...region.querySelectorAll<HTMLElement>('[data-testid="toast"]')];
    expect(toasts.map((t) => [t.dataset.kind, t.querySelector(".toast-message")?.textContent])).toEqual([
      ["success", "Saved"],
      ["error", "Could not save: disk full"],
      ["info", "Hello"],
    ]);

    act(() => void vi.advanceTimersByTime(7000));
    expect([...region.querySelectorAll<HTMLElement>('[data-testid="toast"]')].map((t) => t.dataset.kind)).toEqual(["error"]);
    view.unmount();
  });
});
