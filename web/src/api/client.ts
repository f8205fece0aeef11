// The one way the UI talks to Toru's API: JSON in, JSON out, errors as ApiError
// with the server's own sentence, and a 401 anywhere sends the user to /login.

/** An answer that was not 2xx, or no answer at all (`status` 0). */
export class ApiError extends Error {
  readonly status: number;
  /** The parsed JSON body, when there was one (`{"error": ..., "field": ...}`). */
  readonly body: Record<string, unknown> | null;

  constructor(status: number, message: string, body: Record<string, unknown> | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  /** The request body key the error is about, when the server named one. */
  get field(): string | undefined {
    const field = this.body?.field;
    return typeof field === "string" ? field : undefined;
  }
}

type UnauthorizedHandler = () => void;
let unauthorized: UnauthorizedHandler | null = null;

/** Called on any 401 not asked for (`allow401`): the session is gone. */
export function setUnauthorizedHandler(handler: UnauthorizedHandler | null): void {
  unauthorized = handler;
}

/** Tell the app its session has ended (also used by the stream and plugin fetches). */
export function reportUnauthorized(): void {
  unauthorized?.();
}

export interface RequestOptions {
  /** JSON body for POST/PUT/DELETE. */
  body?: unknown;
  query?: Record<string, string | number | boolean | null | undefined>;
  signal?: AbortSignal;
  /** A 401 is an ordinary error here (the login form), not "session expired". */
  allow401?: boolean;
}

/** The sentence to show for a failed answer: the server's `error`, else the HTTP status. */
export function errorMessage(status: number, statusText: string, body: unknown): string {
  if (body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string") {
    return (body as { error: string }).error;
  }
  return `the server answered HTTP ${status}${statusText ? " " + statusText : ""}`;
}

export function withQuery(path: string, query?: RequestOptions["query"]): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * One API call. State-changing methods always send `Content-Type: application/json`
 * (Toru's CSRF rule requires it, even with no body). Resolves to the parsed body
 * (`undefined` for 204); rejects with ApiError.
 */
export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const init: RequestInit = { method, headers, credentials: "same-origin", signal: options.signal };
  if (method !== "GET" && method !== "HEAD") {
    headers["Content-Type"] = "application/json";
    if (options.body !== undefined) init.body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), init);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "could not reach Toru; check your connection and try again");
  }
  if (response.status === 204) return undefined as T;
  const body = await readJson(response);
  if (!response.ok) {
    if (response.status === 401 && !options.allow401) reportUnauthorized();
    const record = body && typeof body === "object" ? (body as Record<string, unknown>) : null;
    throw new ApiError(response.status, errorMessage(response.status, response.statusText, body), record);
  }
  return body as T;
}

export const api = {
  get: <T>(path: string, options?: Omit<RequestOptions, "body">) => request<T>("GET", path, options),
  post: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("POST", path, { ...options, body }),
  put: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("PUT", path, { ...options, body }),
  del: <T>(path: string, options?: RequestOptions) => request<T>("DELETE", path, options),
};

/** `encodeURIComponent` for one path segment (plugin ids are safe, but say so once). */
export const seg = (value: string | number): string => encodeURIComponent(String(value));
