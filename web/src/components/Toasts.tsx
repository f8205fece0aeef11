import { dismissToast, toastStore, type Toast } from "../toasts";
import { useStore } from "../store";

const all = (toasts: Toast[]) => toasts;
const ICON = { success: "✓", error: "!", info: "i" } as const;

/** The toast area: one polite live region, so every new toast is read out once. */
export function Toasts() {
  const toasts = useStore(toastStore, all);
  return (
    <div class="toasts" data-testid="toasts" aria-live="polite" aria-relevant="additions text">
      {toasts.map((toast) => (
        <div key={toast.id} class={`toast toast-${toast.kind}`} data-testid="toast" data-kind={toast.kind}>
          <span class="toast-icon" aria-hidden="true">
            {ICON[toast.kind]}
          </span>
          <span class="toast-message">{toast.message}</span>
          <button type="button" class="toast-close" aria-label="Dismiss notification" onClick={() => dismissToast(toast.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
