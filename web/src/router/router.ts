// A small history router: one current location, navigate() and the back button.

import { useEffect, useState } from "preact/hooks";

export interface Location {
  pathname: string;
  search: string;
}

type Listener = (location: Location) => void;
const listeners = new Set<Listener>();
let navigations = 0;

function current(): Location {
  return { pathname: window.location.pathname, search: window.location.search };
}

function notify(): void {
  navigations += 1;
  const location = current();
  for (const listener of [...listeners]) listener(location);
}

/** How many in-app navigations happened; page headings take focus after the first. */
export function navigationCount(): number {
  return navigations;
}

/** Go to a path of the UI without reloading. `replace` keeps the back button tidy. */
export function navigate(path: string, options: { replace?: boolean } = {}): void {
  const url = new URL(path, window.location.origin);
  if (url.origin !== window.location.origin) {
    window.location.assign(url.href);
    return;
  }
  const target = url.pathname + url.search + url.hash;
  if (target === window.location.pathname + window.location.search + window.location.hash && !options.replace) {
    return;
  }
  if (options.replace) window.history.replaceState(null, "", target);
  else window.history.pushState(null, "", target);
  window.scrollTo?.(0, 0);
  notify();
}

window.addEventListener("popstate", notify);

/** The current location, re-rendering on every navigation. */
export function useLocation(): Location {
  const [location, setLocation] = useState(current);
  useEffect(() => {
    listeners.add(setLocation);
    setLocation(current());
    return () => void listeners.delete(setLocation);
  }, []);
  return location;
}

/** Should a click on a link be left to the browser (new tab, download, modifier keys)? */
export function isPlainClick(event: MouseEvent): boolean {
  return event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey && !event.altKey && !event.defaultPrevented;
}
