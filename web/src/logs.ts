// Plugin log records: severity ranks and the level filter, as the server applies them
// (toru/plugins/logs.py). Pure, so tested.

import type { LogRecord, LogPage } from "./api/types";

const RANK: Record<string, number> = { debug: 10, info: 20, warn: 30, warning: 30, error: 40, critical: 50 };

export const LEVEL_CHOICES = [
  { value: "all", label: "All" },
  { value: "debug", label: "Debug" },
  { value: "info", label: "Info" },
  { value: "warn", label: "Warning" },
  { value: "error", label: "Error" },
] as const;

export type LevelChoice = (typeof LEVEL_CHOICES)[number]["value"];

/** A record's level in lower case; records without one count as info (as on the server). */
export function recordLevel(record: LogRecord): string {
  return typeof record.level === "string" && record.level ? record.level.toLowerCase() : "info";
}

export function levelRank(level: string): number {
  return RANK[level.toLowerCase()] ?? 20;
}

/** Does a record pass the minimum level chosen in the Level select? */
export function passesLevel(record: LogRecord, choice: LevelChoice): boolean {
  return choice === "all" || levelRank(recordLevel(record)) >= levelRank(choice);
}

/** A logs API answer's records: `entries` (docs/api.md), or `logs` from older servers. */
export function pageRecords(page: Partial<LogPage> & { logs?: LogRecord[] }): LogRecord[] {
  return page.entries ?? page.logs ?? [];
}

/** The fields shown on a record's line; the rest go in its expandable part. */
export const MAIN_FIELDS = new Set(["timestamp", "level", "message", "stream"]);

export function extraFields(record: LogRecord): [string, unknown][] {
  return Object.entries(record).filter(([key]) => !MAIN_FIELDS.has(key));
}
