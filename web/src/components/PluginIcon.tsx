/** A plugin's icon (an emoji from its metadata) or its initial; decorative. */
export function PluginIcon({ icon, name, large }: { icon: string | null | undefined; name: string; large?: boolean }) {
  const text = icon?.trim() || name.trim().charAt(0).toUpperCase() || "?";
  return (
    <span class={`plugin-icon${icon?.trim() ? "" : " plugin-icon-letter"}${large ? " plugin-icon-large" : ""}`} aria-hidden="true">
      {text}
    </span>
  );
}
