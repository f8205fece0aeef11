import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { navigationCount } from "../router/router";

/**
 * The page's <h1>. After an in-app navigation it takes focus, so a screen reader
 * announces the new page and the keyboard starts from its top; it also sets the tab title.
 */
export function PageHeading({ children, title }: { children: ComponentChildren; title: string }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · Toru`;
  }, [title]);
  useEffect(() => {
    if (navigationCount() > 0) ref.current?.focus({ preventScroll: true });
  }, []);
  return (
    <h1 ref={ref} tabIndex={-1} class="page-title">
      {children}
    </h1>
  );
}
