import { useEffect, useState } from "preact/hooks";
import { api, seg } from "../api/client";
import type { LogPage, LogRecord } from "../api/types";
import { formatTimestamp, formatValue } from "../format";
import { extraFields, LEVEL_CHOICES, pageRecords, passesLevel, recordLevel, type LevelChoice } from "../logs";
import { backoffDelay } from "../stream/reducer";

const PAGE_SIZE = 100;
/** While following, keep this many records on screen. */
const FOLLOW_KEEP = 1000;

function LogLine({ record }: { record: LogRecord }) {
  const level = recordLevel(record);
  const extra = extraFields(record);
  // Toru's own lifecycle records have a source instead of a stream.
  const stream = typeof record.stream === "string" ? record.stream : typeof record.source === "string" ? record.source : "";
  const main = (more?: number) => (
    <span class="log-main">
      <time class="log-time" dateTime={typeof record.timestamp === "string" ? record.timestamp : undefined}>
        {formatTimestamp(record.timestamp, true)}
      </time>
      <span class={`log-level level-badge-${level}`}>{level}</span>
      <span class="log-stream">{stream}</span>
      <span class="log-message">{formatValue(record.message ?? "")}</span>
      {more ? (
        <span class="log-more">
          +{more} field{more === 1 ? "" : "s"}
        </span>
      ) : null}
    </span>
  );
  return (
    <li class={`log-line level-${level}`} data-testid="log-line" data-level={level}>
      {extra.length ? (
        // The whole line opens its other fields (pid, plugin_id, generation…).
        <details>
          <summary>{main(extra.length)}</summary>
          <dl class="kv kv-compact">
            {extra.map(([key, value]) => (
              <div key={key} class="kv-row">
                <dt>{key}</dt>
                <dd>{formatValue(value)}</dd>
              </div>
            ))}
          </dl>
        </details>
      ) : (
        main()
      )}
    </li>
  );
}

type FollowState = "off" | "connecting" | "live" | "retrying";

/**
 * The plugin's log: newest first, a page at a time, filtered by minimum level,
 * and with Follow, new records streamed in at the top.
 */
export function LogsPanel({ id }: { id: string }) {
  const [level, setLevel] = useState<LevelChoice>("all");
  const [page, setPage] = useState(0);
  const [records, setRecords] = useState<LogRecord[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [follow, setFollow] = useState(false);
  const [followState, setFollowState] = useState<FollowState>("off");
  const [reload, setReload] = useState(0);

  useEffect(() => {
    let alive = true;
    setFailure(null);
    api
      .get<LogPage>(`/api/plugins/${seg(id)}/logs`, {
        query: { page, page_size: PAGE_SIZE, level: level === "all" ? undefined : level },
      })
      .then(
        (answer) => {
          if (!alive) return;
          setRecords(pageRecords(answer));
          setHasMore(Boolean(answer.has_more));
        },
        (error: unknown) => alive && setFailure(error instanceof Error ? error.message : String(error)),
      );
    return () => {
      alive = false;
    };
  }, [id, page, level, reload]);

  // Follow: the server streams records written from now on; add those that pass the filter.
  useEffect(() => {
    if (!follow) {
      setFollowState("off");
      return;
    }
    let source: EventSource | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    let stopped = false;
    const open = () => {
      setFollowState(failures ? "retrying" : "connecting");
      const es = new EventSource(`/api/plugins/${seg(id)}/logs/stream`, { withCredentials: true });
      source = es;
      es.addEventListener("open", () => {
        failures = 0;
        setFollowState("live");
      });
      es.addEventListener("log", (event) => {
        let record: LogRecord;
        try {
          record = JSON.parse((event as MessageEvent<string>).data) as LogRecord;
        } catch {
          return;
        }
        if (!record || typeof record !== "object" || !passesLevel(record, level)) return;
        setRecords((current) => [record, ...(current ?? [])].slice(0, FOLLOW_KEEP));
      });
      es.addEventListener("error", () => {
        es.close();
        if (stopped) return;
        setFollowState("retrying");
        // A 401 here means the session ended: asking /me sends the user to /login.
        api.get("/api/auth/me").catch(() => undefined);
        timer = setTimeout(open, backoffDelay(failures++));
      });
    };
    open();
    return () => {
      stopped = true;
      clearTimeout(timer);
      source?.close();
    };
  }, [id, follow, level]);

  const toggleFollow = (on: boolean) => {
    setFollow(on);
    if (on) {
      // Following shows the newest records: start again from the first page.
      setPage(0);
      setReload((n) => n + 1);
    }
  };

  return (
    <section class="card-section logs-panel" data-testid="logs-panel" aria-labelledby="logs-title">
      <div class="section-header">
        <h2 id="logs-title" class="section-title">
          Logs
        </h2>
        <div class="logs-controls">
          <label class="inline-field">
            <span>Level</span>
            <select
              data-testid="logs-level"
              value={level}
              onChange={(event) => {
                setLevel(event.currentTarget.value as LevelChoice);
                setPage(0);
              }}
            >
              {LEVEL_CHOICES.map((choice) => (
                <option key={choice.value} value={choice.value}>
                  {choice.label}
                </option>
              ))}
            </select>
          </label>
          <label class="inline-field checkbox-field">
            <input
              type="checkbox"
              data-testid="logs-follow"
              checked={follow}
              onChange={(event) => toggleFollow(event.currentTarget.checked)}
            />
            <span>Follow</span>
          </label>
          <span class={`follow-state follow-${followState}`} role="status">
            {followState === "live" ? "Following new records" : followState === "connecting" ? "Connecting…" : followState === "retrying" ? "Reconnecting…" : ""}
          </span>
        </div>
      </div>
      {failure && (
        <p class="form-error" role="alert">
          Could not load the log: {failure}
        </p>
      )}
      {records === null && !failure ? (
        <p class="muted">Loading the log…</p>
      ) : records && records.length ? (
        <ol class="log-list" aria-label={`Log records, newest first, page ${page + 1}`}>
          {records.map((record, index) => (
            <LogLine key={`${page}-${records.length - index}`} record={record} />
          ))}
        </ol>
      ) : (
        records && <p class="muted">{level === "all" ? "No log records yet." : "No records at this level or above."}</p>
      )}
      <div class="pager">
        <button type="button" class="button button-small" disabled={page === 0 || follow} onClick={() => setPage(page - 1)}>
          <span aria-hidden="true">← </span>Newer
        </button>
        <span class="muted">Page {page + 1}</span>
        <button type="button" class="button button-small" disabled={!hasMore || follow} onClick={() => setPage(page + 1)}>
          Older<span aria-hidden="true"> →</span>
        </button>
      </div>
    </section>
  );
}
