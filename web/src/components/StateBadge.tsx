import type { PluginState } from "../api/types";

// Every state of toru/plugins/status.py has a tone: a new one fails to compile here.
const TONE: Record<PluginState, string> = {
  running: "good",
  starting: "busy",
  stopping: "busy",
  backoff: "warn",
  failed: "bad",
  stopped: "muted",
};

/** A plugin's state as a badge whose text is the state itself (`running`, `backoff`…). */
export function StateBadge({ state, testid }: { state: PluginState; testid?: string }) {
  return (
    <span class={`badge badge-${TONE[state] ?? "muted"}`} data-testid={testid}>
      {state}
    </span>
  );
}
