// The shapes of docs/api.md, as the UI uses them.

export type Role = "admin" | "client";

/** Who is logged in (`GET /api/auth/me`, login). */
export interface Identity {
  id: number | null;
  username: string;
  role: Role;
  display_name: string;
  source: "database" | "environment";
}

/** A database user (`/api/users`). */
export interface User {
  id: number;
  username: string;
  display_name: string;
  role: Role;
  is_active: boolean;
  created_at: string;
  updated_at: string;
  password_changed_at: string;
}

export type Health = "healthy" | "unhealthy" | "disabled";

/** What every logged-in user may see of a plugin (the public view). */
export interface PublicPlugin {
  id: string;
  name: string;
  version: string;
  author: string | null;
  icon: string | null;
  route: string;
  enabled: boolean;
  running: boolean;
  health: Health;
  state: string;
}

/** The full status administrators see. */
export interface PluginStatus extends PublicPlugin {
  protocol: number;
  extra?: Record<string, unknown>;
  pid: number | null;
  restart_count: number;
  failures_in_a_row: number;
  last_error: string | null;
  mode: "modern" | "legacy";
  socket: string | null;
  started_at: string | null;
  uptime_s: number | null;
  binary: string;
}

/** Either view: administrators get statuses, everyone else public views. */
export type AnyPlugin = PublicPlugin & Partial<PluginStatus>;

export interface RejectedBinary {
  file: string;
  reason: string;
}

export interface PluginList {
  plugins: AnyPlugin[];
  rejected?: RejectedBinary[];
}

export interface PluginEvent {
  id: number;
  plugin_id: string;
  event: string;
  details: Record<string, unknown> | null;
  timestamp: string;
}

/** One record of a plugin's log file: Toru's fields plus whatever the plugin wrote. */
export interface LogRecord {
  timestamp?: string;
  level?: string;
  message?: unknown;
  stream?: string;
  [field: string]: unknown;
}

export interface LogPage {
  entries: LogRecord[];
  page: number;
  page_size: number;
  has_more: boolean;
}

export interface HistoryEntry {
  id: number;
  timestamp: string;
  username: string;
  address: string;
  user_agent: string;
  outcome: "success" | "failure" | "locked" | "reset" | string;
  reason: string;
}

export interface HistoryPage {
  entries: HistoryEntry[];
  page: number;
  page_size: number;
  total: number;
}

export interface TaskNode {
  name: string;
  system: boolean;
  children: TaskNode[];
}
