// Turning numbers and timestamps into words. Pure, so tested.

/** Whole seconds from `now` until `until` (ISO timestamp), never below 0. */
export function secondsUntil(until: string | number | Date, now: number = Date.now()): number {
  const target = until instanceof Date ? until.getTime() : typeof until === "number" ? until : Date.parse(until);
  if (Number.isNaN(target)) return 0;
  return Math.max(0, Math.ceil((target - now) / 1000));
}

const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? "" : "s"}`;

/** A countdown for people: "45 seconds", "1 minute 5 seconds", "2 minutes". */
export function formatCountdown(seconds: number): string {
  const total = Math.max(0, Math.ceil(seconds));
  if (total < 60) return plural(total, "second");
  const minutes = Math.floor(total / 60);
  const rest = total % 60;
  return rest ? `${plural(minutes, "minute")} ${plural(rest, "second")}` : plural(minutes, "minute");
}

/** A duration, short: "42 s", "4 min 16 s", "3 h 2 min", "2 d 5 h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${s % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** A timestamp in the browser's time zone: "2026-11-25 19:36:59" (with ".529" when `ms`). */
export function formatTimestamp(value: unknown, ms = false): string {
  if (typeof value !== "string" && typeof value !== "number") return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const text = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return ms ? `${text}.${pad(date.getMilliseconds(), 3)}` : text;
}

/** Any JSON value as one readable line (strings as they are). */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}
