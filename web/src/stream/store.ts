// The live plugin list: one EventSource on GET /api/stream for the whole app,
// reconnected with backoff, feeding the reducer. Everything else reads `streamStore`.

import { api } from "../api/client";
import type { AnyPlugin, PluginList } from "../api/types";
import { createStore } from "../store";
import { backoffDelay, initialStreamState, streamReducer, type StreamAction, type StreamState } from "./reducer";

export const streamStore = createStore<StreamState, StreamAction>(streamReducer, initialStreamState);

let source: EventSource | null = null;
let retry: ReturnType<typeof setTimeout> | undefined;
let failures = 0;
let running = false;

function parse<T>(event: Event): T | null {
  try {
    return JSON.parse((event as MessageEvent<string>).data) as T;
  } catch {
    return null;
  }
}

function open(): void {
  const es = new EventSource("/api/stream", { withCredentials: true });
  source = es;
  es.addEventListener("open", () => streamStore.dispatch({ type: "connected", connected: true }));
  es.addEventListener("snapshot", (event) => {
    const data = parse<{ plugins: AnyPlugin[] }>(event);
    if (!data) return;
    failures = 0;
    streamStore.dispatch({ type: "connected", connected: true });
    streamStore.dispatch({ type: "snapshot", plugins: data.plugins ?? [] });
  });
  es.addEventListener("plugin", (event) => {
    const plugin = parse<AnyPlugin>(event);
    if (plugin?.id) streamStore.dispatch({ type: "plugin", plugin });
  });
  es.addEventListener("removed", (event) => {
    const data = parse<{ id: string }>(event);
    if (data?.id) streamStore.dispatch({ type: "removed", id: data.id });
  });
  es.addEventListener("error", () => {
    // EventSource retries some failures by itself and gives up on others (a 401);
    // take over so both are handled the same way, with our own backoff.
    es.close();
    if (source !== es) return;
    source = null;
    streamStore.dispatch({ type: "connected", connected: false });
    if (!running) return;
    const delay = backoffDelay(failures);
    failures += 1;
    // A stream that failed because the session expired shows up as a 401 here,
    // which sends the user to the login page (and stops the stream).
    // (request() reports the 401 itself; any other failure just means "retry later".)
    api.get("/api/auth/me").catch(() => undefined);
    retry = setTimeout(() => {
      retry = undefined;
      if (running && !source) open();
    }, delay);
  });
}

/** Start following the stream (after login). Harmless when already started. */
export function startStream(): void {
  if (running) return;
  running = true;
  failures = 0;
  open();
  // The same list by plain GET, so pages need not wait for the stream (say, behind a
  // proxy that buffers it); the first snapshot replaces it.
  api
    .get<PluginList>("/api/plugins")
    .then((list) => {
      if (running) streamStore.dispatch({ type: "answer", plugins: list.plugins ?? [], complete: true });
    })
    .catch(() => undefined);
}

/** Stop following it and forget what it said (on sign-out or an expired session). */
export function stopStream(): void {
  running = false;
  clearTimeout(retry);
  retry = undefined;
  source?.close();
  source = null;
  streamStore.dispatch({ type: "reset" });
}
