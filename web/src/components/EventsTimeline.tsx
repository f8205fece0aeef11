import { useEffect, useRef, useState } from "preact/hooks";
import { api, seg } from "../api/client";
import type { PluginEvent } from "../api/types";
import { formatTimestamp, formatValue } from "../format";

const PAGE = 25;
/** Details the one-line summary already says. */
const SUMMARISED = new Set([
  "exit", "returncode", "signal", "reason", "how", "delay", "attempt", "uptime_s", "after_ms",
  "duration_ms", "mode", "generation", "missed_pings", "file", "version", "pid",
]);

const TONE: Record<string, string> = {
  crashed: "bad",
  failed: "bad",
  start_failed: "bad",
  rejected: "bad",
  backoff: "warn",
  unhealthy: "warn",
  stopping: "muted",
  stopped: "muted",
  disabled: "muted",
  removed: "muted",
  ready: "good",
  started: "good",
  enabled: "good",
};

function merge(current: PluginEvent[], more: PluginEvent[]): PluginEvent[] {
  const byId = new Map(current.map((event) => [event.id, event]));
  for (const event of more) byId.set(event.id, event);
  return [...byId.values()].sort((a, b) => b.id - a.id);
}

/** One line that says what happened, from the details that matter most. */
export function eventSummary(event: PluginEvent): string {
  const d = event.details ?? {};
  const parts: string[] = [];
  const num = (key: string) => (typeof d[key] === "number" ? (d[key] as number) : null);
  const str = (key: string) => (typeof d[key] === "string" ? (d[key] as string) : null);
  if (str("exit")) parts.push(str("exit")!);
  if (num("returncode") !== null) parts.push(`exit code ${num("returncode")}`);
  if (str("signal") || num("signal") !== null) parts.push(`signal ${d.signal}`);
  if (str("reason")) parts.push(str("reason")!);
  if (str("how")) parts.push(`by ${str("how")}`);
  if (num("delay") !== null) parts.push(`retry in ${num("delay")} s`);
  if (num("attempt") !== null) parts.push(`failure ${num("attempt")} in a row`);
  if (num("missed_pings") !== null) parts.push(`missed ${num("missed_pings")} pings`);
  if (num("uptime_s") !== null) parts.push(`after ${num("uptime_s")} s`);
  if (num("after_ms") !== null) parts.push(`ready after ${Math.round(num("after_ms")!)} ms`);
  if (num("duration_ms") !== null) parts.push(`took ${Math.round(num("duration_ms")!)} ms`);
  if (str("mode")) parts.push(str("mode")!);
  if (str("file")) parts.push(str("file")!);
  if (str("version")) parts.push(`version ${str("version")}`);
  if (num("generation") !== null) parts.push(`run ${num("generation")}`);
  if (num("pid") !== null) parts.push(`pid ${num("pid")}`);
  return parts.join(" · ");
}

function Details({ details }: { details: Record<string, unknown> }) {
  const entries = Object.entries(details).filter(([key]) => key !== "stderr_tail");
  const tail = details.stderr_tail;
  return (
    <>
      {entries.length > 0 && (
        <dl class="kv kv-compact">
          {entries.map(([key, value]) => (
            <div key={key} class="kv-row">
              <dt>{key}</dt>
              <dd>{formatValue(value)}</dd>
            </div>
          ))}
        </dl>
      )}
      {Array.isArray(tail) && tail.length > 0 && (
        <details class="event-tail" open>
          <summary>Last {tail.length} lines of its output</summary>
          <pre class="code">{tail.map((line) => formatValue(line)).join("\n")}</pre>
        </details>
      )}
    </>
  );
}

/**
 * The plugin's lifecycle events, newest first, paged with `before`; new ones are
 * fetched whenever `revision` changes (the plugin's live status moved).
 */
export function EventsTimeline({ id, revision }: { id: string; revision: string }) {
  const [events, setEvents] = useState<PluginEvent[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const first = useRef(true);

  useEffect(() => {
    let alive = true;
    api.get<{ events: PluginEvent[] }>(`/api/plugins/${seg(id)}/events`, { query: { limit: PAGE } }).then(
      (answer) => {
        if (!alive) return;
        setEvents((current) => merge(current ?? [], answer.events));
        if (first.current) setHasMore(answer.events.length === PAGE);
        first.current = false;
        setFailure(null);
      },
      (error: unknown) => alive && setFailure(error instanceof Error ? error.message : String(error)),
    );
    return () => {
      alive = false;
    };
  }, [id, revision]);

  async function older() {
    if (!events?.length) return;
    setBusy(true);
    try {
      const before = Math.min(...events.map((event) => event.id));
      const answer = await api.get<{ events: PluginEvent[] }>(`/api/plugins/${seg(id)}/events`, {
        query: { limit: PAGE, before },
      });
      setEvents((current) => merge(current ?? [], answer.events));
      setHasMore(answer.events.length === PAGE);
    } catch (error) {
      setFailure(error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section class="card-section" aria-labelledby="events-title">
      <h2 id="events-title" class="section-title">
        Events
      </h2>
      {failure && (
        <p class="form-error" role="alert">
          Could not load events: {failure}
        </p>
      )}
      <ol class="timeline" data-testid="events-timeline" aria-busy={events === null ? "true" : "false"}>
        {events?.map((event) => (
          <li key={event.id} class={`timeline-item tone-${TONE[event.event] ?? "neutral"}`} data-event={event.event}>
            <span class="timeline-marker" aria-hidden="true" />
            <div class="timeline-body">
              <p class="timeline-head">
                <strong class="timeline-event">{event.event}</strong>
                <time dateTime={event.timestamp} class="muted">
                  {formatTimestamp(event.timestamp, true)}
                </time>
              </p>
              {eventSummary(event) && <p class="timeline-summary">{eventSummary(event)}</p>}
              {event.details && Object.keys(event.details).some((key) => !SUMMARISED.has(key)) && (
                <details class="timeline-details" open={event.event === "crashed" || event.event === "failed"}>
                  <summary>Details</summary>
                  <Details details={event.details} />
                </details>
              )}
            </div>
          </li>
        ))}
      </ol>
      {events !== null && events.length === 0 && <p class="muted">No events recorded for this plugin (they are kept for 7 days).</p>}
      {events === null && !failure && <p class="muted">Loading events…</p>}
      {hasMore && (
        <button type="button" class="button" onClick={older} disabled={busy} aria-busy={busy ? "true" : undefined}>
          Load older events
        </button>
      )}
    </section>
  );
}
