import { useEffect, useState } from "preact/hooks";
import { api } from "../api/client";
import type { HistoryPage } from "../api/types";
import { formatTimestamp } from "../format";

const PAGE_SIZE = 25;
const TONE: Record<string, string> = { success: "good", failure: "bad", locked: "warn", reset: "accent" };

/** The login history (newest first), a page at a time, optionally for one username. */
export function LoginHistory({ refresh }: { refresh: number }) {
  const [page, setPage] = useState(1);
  const [filter, setFilter] = useState("");
  const [applied, setApplied] = useState("");
  const [data, setData] = useState<HistoryPage | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    api
      .get<HistoryPage>("/api/auth/history", { query: { page, page_size: PAGE_SIZE, username: applied || undefined } })
      .then(
        (answer) => {
          if (!alive) return;
          setData(answer);
          setFailure(null);
        },
        (error: unknown) => alive && setFailure(error instanceof Error ? error.message : String(error)),
      );
    return () => {
      alive = false;
    };
  }, [page, applied, refresh]);

  const pages = data ? Math.max(1, Math.ceil(data.total / PAGE_SIZE)) : 1;
  return (
    <section class="card-section" aria-labelledby="history-title">
      <div class="section-header">
        <h2 id="history-title" class="section-title">
          Login history
        </h2>
        <form
          class="inline-form"
          role="search"
          onSubmit={(event) => {
            event.preventDefault();
            setPage(1);
            setApplied(filter.trim().toLowerCase());
          }}
        >
          <label class="inline-field">
            <span>Filter history</span>
            <input
              type="search"
              placeholder="a username"
              value={filter}
              autocapitalize="none"
              onInput={(event) => setFilter(event.currentTarget.value)}
            />
          </label>
          <button type="submit" class="button button-small">
            Apply
          </button>
        </form>
      </div>
      {failure && (
        <p class="form-error" role="alert">
          Could not load the history: {failure}
        </p>
      )}
      {data && data.entries.length === 0 ? (
        <p class="muted">{applied ? `No logins recorded for “${applied}”.` : "No logins recorded yet."}</p>
      ) : (
        data && (
          <div class="table-wrap">
            <table class="table history-table">
              <caption class="visually-hidden">Login attempts, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Username</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Address</th>
                  <th scope="col">Browser</th>
                </tr>
              </thead>
              <tbody>
                {data.entries.map((entry) => (
                  <tr key={entry.id} data-testid="history-row">
                    <td data-label="Time">
                      <time dateTime={entry.timestamp}>{formatTimestamp(entry.timestamp)}</time>
                    </td>
                    <td data-label="Username">{entry.username}</td>
                    <td data-label="Outcome">
                      <span class={`badge badge-${TONE[entry.outcome] ?? "muted"}`}>{entry.outcome}</span>
                    </td>
                    <td data-label="Reason">{entry.reason || "—"}</td>
                    <td data-label="Address" class="mono">
                      {entry.address}
                    </td>
                    <td data-label="Browser" class="cell-truncate" title={entry.user_agent}>
                      {entry.user_agent || "—"}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      )}
      {data && data.total > PAGE_SIZE && (
        <div class="pager">
          <button type="button" class="button button-small" disabled={page <= 1} onClick={() => setPage(page - 1)}>
            Previous page
          </button>
          <span class="muted">
            Page {page} of {pages} · {data.total} entries
          </span>
          <button type="button" class="button button-small" disabled={page >= pages} onClick={() => setPage(page + 1)}>
            Next page
          </button>
        </div>
      )}
    </section>
  );
}
