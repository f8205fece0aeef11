import type { Health } from "../api/types";

const WORDS: Record<Health, string> = { healthy: "healthy", unhealthy: "unhealthy", disabled: "disabled" };

/** A coloured dot with its meaning in words for screen readers (and as a tooltip). */
export function HealthDot({ health, label }: { health: Health; label?: boolean }) {
  const words = WORDS[health] ?? String(health);
  return (
    <span class={`health health-${health}`} data-health={health} title={`Health: ${words}`}>
      <span class="health-dot" aria-hidden="true" />
      {label ? <span class="health-label">{words}</span> : <span class="visually-hidden">({words})</span>}
    </span>
  );
}
