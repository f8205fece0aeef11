import { useEffect, useState } from "preact/hooks";
import { api, ApiError, seg } from "./client";

export interface PluginLookup<T> {
  /** The plugin; `null` when the server says there is none (404); `undefined` while loading. */
  fetched: T | null | undefined;
  /** Why the lookup failed (other than a 404), or null. */
  failure: string | null;
  retry: () => void;
}

/** `GET /api/plugins/{id}`, again on `retry`; nothing while `skip` is true. */
export function usePluginLookup<T>(id: string, skip = false): PluginLookup<T> {
  const [fetched, setFetched] = useState<T | null | undefined>(undefined);
  const [failure, setFailure] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    if (skip) return;
    let alive = true;
    api.get<T>(`/api/plugins/${seg(id)}`).then(
      (plugin) => alive && setFetched(plugin),
      (error: unknown) => {
        if (!alive) return;
        if (error instanceof ApiError && error.status === 404) setFetched(null);
        else setFailure(error instanceof Error ? error.message : String(error));
      },
    );
    return () => {
      alive = false;
    };
  }, [id, skip, attempt]);

  const retry = () => {
    setFailure(null);
    setAttempt((n) => n + 1);
  };
  return { fetched, failure, retry };
}
