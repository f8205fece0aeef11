import { useEffect, useState } from "preact/hooks";
import { ApiError } from "../api/client";
import { formatCountdown, secondsUntil } from "../format";

/** When a 429 says the lock ends, as epoch milliseconds: `locked_until`, else `retry_after`. */
export function lockEnd(error: ApiError, now: number = Date.now()): number {
  const until = error.body?.locked_until;
  if (typeof until === "string" && !Number.isNaN(Date.parse(until))) return Date.parse(until);
  const after = error.body?.retry_after;
  return now + (typeof after === "number" && after > 0 ? after : 60) * 1000;
}

/** Seconds left until `until` (epoch ms), updated every second; 0 once passed. */
export function useCountdown(until: number | null): number {
  const [left, setLeft] = useState(() => (until === null ? 0 : secondsUntil(until)));
  useEffect(() => {
    if (until === null) return setLeft(0);
    const tick = () => setLeft(secondsUntil(until));
    tick();
    const timer = setInterval(tick, 250);
    return () => clearInterval(timer);
  }, [until]);
  return left;
}

/** The lock-out message with a live countdown; inside the form's alert. */
export function LockoutMessage({ until }: { until: number }) {
  const left = useCountdown(until);
  if (left <= 0) return <>the lock has ended; you can try again now</>;
  return (
    <>
      too many failed logins; try again in{" "}
      <span role="timer" class="countdown">
        {formatCountdown(left)}
      </span>
    </>
  );
}
