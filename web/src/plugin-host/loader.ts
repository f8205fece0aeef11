// Loading a plugin's bundle.js as a classic <script> (the CSP allows scripts from
// Toru itself only) and finding what it registered. A bundle runs once per page;
// it runs again only after the plugin was disabled, removed or changed version
// (see invalidateOnChange), and then its old <script> and registration go first.

import { errorMessage, reportUnauthorized, seg } from "../api/client";
import { findRegistration, forgetRegistration, missingRegistrationReason, type Registration } from "./lookup";

const loaded = new Map<string, Promise<Registration>>();

export const bundleUrl = (id: string): string => `/api/plugins/${seg(id)}/bundle.js`;

/** Why the browser could not load the script: ask the server again to get its sentence. */
async function loadFailure(url: string): Promise<string> {
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.ok) return "the browser refused to run bundle.js (is it JavaScript?)";
    if (response.status === 401) reportUnauthorized();
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return `could not load bundle.js: ${errorMessage(response.status, response.statusText, body)} (HTTP ${response.status})`;
  } catch {
    return "could not load bundle.js: the server did not answer";
  }
}

function inject(id: string): Promise<Registration> {
  for (const old of document.querySelectorAll<HTMLScriptElement>("script[data-toru-plugin]")) {
    if (old.dataset.toruPlugin === id) old.remove();
  }
  forgetRegistration(window, id);

  const url = bundleUrl(id);
  const script = document.createElement("script");
  script.src = url;
  script.async = true;
  script.dataset.toruPlugin = id;
  const absolute = script.src;

  return new Promise<Registration>((resolve, reject) => {
    let thrown: string | null = null;
    // An exception while the bundle runs is reported to window, not to the script element.
    const onError = (event: ErrorEvent) => {
      if (event.filename && event.filename.split("?")[0] === absolute) {
        thrown = event.error instanceof Error ? event.error.message : event.message;
      }
    };
    const cleanup = () => {
      window.removeEventListener("error", onError);
      script.onload = null;
      script.onerror = null;
    };
    window.addEventListener("error", onError);
    script.onload = () => {
      cleanup();
      if (thrown !== null) return reject(new Error(`bundle.js failed while it ran: ${thrown}`));
      const found = findRegistration(window, id);
      if (!found) return reject(new Error(missingRegistrationReason(window, id)));
      resolve(found.registration);
    };
    script.onerror = () => {
      cleanup();
      script.remove();
      void loadFailure(url).then((reason) => reject(new Error(reason)));
    };
    document.head.appendChild(script);
  });
}

/** The registration of plugin `id`, running its bundle first if needed. Failures are not kept. */
export function loadBundle(id: string): Promise<Registration> {
  let promise = loaded.get(id);
  if (!promise) {
    promise = inject(id);
    loaded.set(id, promise);
    promise.catch(() => {
      if (loaded.get(id) === promise) loaded.delete(id);
    });
  }
  return promise;
}

/** Load it again next time (the plugin was disabled, removed or updated). */
export function forgetBundle(id: string): void {
  loaded.delete(id);
}

/** Has the bundle's registration been kept since the last load? (For tests and debugging.) */
export function isBundleLoaded(id: string): boolean {
  return loaded.has(id);
}

export interface BundleKey {
  enabled: boolean;
  version: string;
}

/**
 * Should a change of a plugin's status make us load its bundle afresh? Yes when it
 * was disabled or removed, or when its version changed. Restarts keep the bundle.
 */
export function bundleOutdated(before: BundleKey, after: BundleKey | undefined): boolean {
  if (!after || !after.enabled || !before.enabled) return true;
  return before.version !== after.version;
}

/** Forget the bundles that a change of the plugin list made outdated. */
export function forgetOutdatedBundles(before: Record<string, BundleKey>, after: Record<string, BundleKey>): void {
  for (const id of loaded.keys()) {
    const old = before[id];
    if (old && bundleOutdated(old, after[id])) loaded.delete(id);
  }
}
