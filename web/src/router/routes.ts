// Which page a browser path shows. Pure, so it is tested on its own.

export type Route =
  | { name: "login" }
  | { name: "home" }
  | { name: "plugins" }
  | { name: "plugin-detail"; id: string }
  | { name: "plugin-view"; id: string }
  | { name: "users" }
  | { name: "account" }
  | { name: "supervisor" }
  | { name: "not-found" };

const STATIC: Record<string, Route> = {
  "/login": { name: "login" },
  "/": { name: "home" },
  "/plugins": { name: "plugins" },
  "/users": { name: "users" },
  "/account": { name: "account" },
  "/supervisor": { name: "supervisor" },
};

function decode(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** The route for a pathname (no query string). A trailing slash does not matter. */
export function matchRoute(pathname: string): Route {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, "") || "/" : pathname || "/";
  const fixed = STATIC[path];
  if (fixed) return fixed;
  const match = /^\/(plugins|plugin)\/([^/]+)$/.exec(path);
  if (match) {
    const id = decode(match[2]);
    if (id) return { name: match[1] === "plugins" ? "plugin-detail" : "plugin-view", id };
  }
  return { name: "not-found" };
}

/** Pages only administrators may open (others see the 404 page). */
export function isAdminRoute(route: Route): boolean {
  return ["plugins", "plugin-detail", "users", "supervisor"].includes(route.name);
}

/**
 * Where to go after signing in: the `next` query parameter when it is a path of this
 * UI (never another site, never /login itself), else Home.
 */
export function nextAfterLogin(search: string): string {
  const next = new URLSearchParams(search).get("next");
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  if (matchRoute(next.split(/[?#]/)[0]).name === "login") return "/";
  return next;
}

/** The login page's URL that brings the user back to `path` afterwards. */
export function loginPath(path: string): string {
  if (!path || path === "/" || matchRoute(path.split(/[?#]/)[0]).name === "login") return "/login";
  return `/login?next=${encodeURIComponent(path)}`;
}
