interface SwitchProps {
  checked: boolean;
  busy?: boolean;
  label: string;
  onChange: (checked: boolean) => void;
  testid?: string;
}

/** An on/off switch (`role="switch"`), marked `aria-busy` while its change is being applied. */
export function Switch({ checked, busy, label, onChange, testid }: SwitchProps) {
  return (
    <button
      type="button"
      role="switch"
      class={`switch${busy ? " switch-busy" : ""}`}
      aria-checked={checked ? "true" : "false"}
      aria-busy={busy ? "true" : "false"}
      aria-label={label}
      data-testid={testid}
      aria-disabled={busy ? "true" : undefined}
      // Not `disabled`: that would drop keyboard focus while the change runs.
      onClick={() => {
        if (!busy) onChange(!checked);
      }}
    >
      <span class="switch-track" aria-hidden="true">
        <span class="switch-thumb" />
      </span>
    </button>
  );
}
