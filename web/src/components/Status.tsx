import type { ComponentChildren } from "preact";

/** "Loading…" that screen readers hear once. */
export function Loading({ what = "Loading…" }: { what?: string }) {
  return (
    <p class="loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {what}
    </p>
  );
}

/** An error from loading a page's data, with a way to try again. */
export function LoadError({ message, retry }: { message: string; retry?: () => void }) {
  return (
    <div class="panel panel-error" role="alert">
      <p>{message}</p>
      {retry && (
        <button type="button" class="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** A friendly "nothing here yet" with what to do about it. */
export function EmptyState({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <p class="empty-title">{title}</p>
      {children && <div class="empty-body">{children}</div>}
    </div>
  );
}
