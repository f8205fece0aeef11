const TONE: Record<string, string> = {
  running: "good",
  starting: "busy",
  stopping: "busy",
  backoff: "warn",
  failed: "bad",
  stopped: "muted",
};

/** A plugin's state as a badge whose text is the state itself (`running`, `backoff`…). */
export function StateBadge({ state, testid }: { state: string; testid?: string }) {
  return (
    <span class={`badge badge-${TONE[state] ?? "muted"}`} data-testid={testid}>
      {state}
    </span>
  );
}
