// Toasts: short messages in the corner, for the UI and for plugins (api.showToast).

import { createStore } from "./store";

export type ToastKind = "success" | "error" | "info";

export interface Toast {
  id: number;
  message: string;
  kind: ToastKind;
}

type Action = { type: "add"; toast: Toast } | { type: "dismiss"; id: number };

const MAX_TOASTS = 5;
/** Errors stay longer: they are usually the ones to read twice. */
const LIFETIME: Record<ToastKind, number> = { success: 6000, info: 6000, error: 10000 };

export const toastStore = createStore<Toast[], Action>((toasts, action) => {
  switch (action.type) {
    case "add":
      return [...toasts, action.toast].slice(-MAX_TOASTS);
    case "dismiss":
      return toasts.some((toast) => toast.id === action.id) ? toasts.filter((toast) => toast.id !== action.id) : toasts;
  }
}, []);

let nextId = 1;

export function toastKind(kind: unknown): ToastKind {
  return kind === "success" || kind === "error" ? kind : "info";
}

/** Show a toast; any `kind` other than success/error is shown as info. Returns its id. */
export function showToast(message: unknown, kind: unknown = "info"): number {
  const toast: Toast = { id: nextId++, message: String(message ?? ""), kind: toastKind(kind) };
  toastStore.dispatch({ type: "add", toast });
  setTimeout(() => dismissToast(toast.id), LIFETIME[toast.kind]);
  return toast.id;
}

export function dismissToast(id: number): void {
  toastStore.dispatch({ type: "dismiss", id });
}
