import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Identity } from "../api/types";
import type { Route } from "../router/routes";
import { isAdmin } from "../session";
import { signOut } from "../session-actions";
import { Icon } from "./Icon";
import { Link } from "./Link";
import { Sidebar } from "./Sidebar";

interface Props {
  identity: Identity;
  route: Route;
  children: ComponentChildren;
}

/** Header, sidebar and the page. On a phone the sidebar hides behind the Menu button. */
export function Layout({ identity, route, children }: Props) {
  const [menuOpen, setMenuOpen] = useState(false);
  const [signingOut, setSigningOut] = useState(false);

  // Any navigation closes the phone menu.
  const where = route.name + ("id" in route ? `/${route.id}` : "");
  useEffect(() => setMenuOpen(false), [where]);
  useEffect(() => {
    if (!menuOpen) return;
    const onKey = (event: KeyboardEvent) => {
      if (event.key === "Escape") {
        setMenuOpen(false);
        document.getElementById("menu-button")?.focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [menuOpen]);

  return (
    <div class={`layout${menuOpen ? " menu-open" : ""}`}>
      <a
        class="skip-link"
        href="#main"
        onClick={(event) => {
          event.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="topbar">
        <button
          id="menu-button"
          type="button"
          class="menu-button"
          aria-expanded={menuOpen ? "true" : "false"}
          aria-controls="sidebar"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          <Icon name="menu" />
          <span class="visually-hidden">Menu</span>
        </button>
        <Link href="/" class="brand">
          <span class="brand-mark" aria-hidden="true" />
          Toru
        </Link>
        <div class="topbar-user">
          <span class="user-name" title={identity.display_name || identity.username}>
            <span class="user-avatar" aria-hidden="true">
              {identity.username.charAt(0).toUpperCase()}
            </span>
            <span class="user-text">
              <span class="visually-hidden">Signed in as </span>
              {identity.username}
            </span>
            {isAdmin(identity) && <span class="badge badge-accent user-role">admin</span>}
          </span>
          <button
            type="button"
            class="button button-quiet"
            disabled={signingOut}
            onClick={() => {
              setSigningOut(true);
              void signOut().finally(() => setSigningOut(false));
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <div class="shell">
        <Sidebar identity={identity} route={route} />
        <button type="button" class="scrim" tabIndex={-1} aria-hidden="true" onClick={() => setMenuOpen(false)} />
        <main id="main" class="main" tabIndex={-1}>
          {children}
        </main>
      </div>
    </div>
  );
}
