// The whole app: who is logged in decides between the login page and the layout,
// and the path decides the page.

import { useEffect } from "preact/hooks";
import { Layout } from "./components/Layout";
import { Loading } from "./components/Status";
import { Toasts } from "./components/Toasts";
import { AccountPage } from "./pages/Account";
import { HomePage } from "./pages/Home";
import { LoginPage } from "./pages/Login";
import { NotFoundPage } from "./pages/NotFound";
import { PluginDetailPage } from "./pages/PluginDetail";
import { PluginsPage } from "./pages/Plugins";
import { PluginViewPage } from "./pages/PluginView";
import { SupervisorPage } from "./pages/Supervisor";
import { UsersPage } from "./pages/Users";
import { isAdminRoute, loginPath, matchRoute, nextAfterLogin, type Route } from "./router/routes";
import { navigate, useLocation } from "./router/router";
import { isAdmin, sessionStore, type SessionState } from "./session";
import { checkSession, watchSession } from "./session-actions";
import { useStore } from "./store";
import type { Identity } from "./api/types";

const same = (state: SessionState) => state;

/** Replace the current URL (a redirect) once rendered. */
function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function page(route: Route, identity: Identity) {
  if (isAdminRoute(route) && !isAdmin(identity)) return <NotFoundPage reason="This page is for administrators only." />;
  switch (route.name) {
    case "home":
      return <HomePage />;
    case "plugins":
      return <PluginsPage />;
    case "plugin-detail":
      return <PluginDetailPage id={route.id} />;
    case "plugin-view":
      return <PluginViewPage id={route.id} identity={identity} />;
    case "users":
      return <UsersPage identity={identity} />;
    case "account":
      return <AccountPage identity={identity} />;
    case "supervisor":
      return <SupervisorPage />;
    default:
      return <NotFoundPage />;
  }
}

export function App() {
  const identity = useStore(sessionStore, same);
  const location = useLocation();
  useEffect(() => {
    watchSession();
    void checkSession();
  }, []);

  const route = matchRoute(location.pathname);
  let content;
  if (identity === undefined) {
    content = (
      <div class="splash">
        <Loading what="Starting Toru…" />
      </div>
    );
  } else if (route.name === "login") {
    content = identity ? <Redirect to={nextAfterLogin(location.search)} /> : <LoginPage />;
  } else if (!identity) {
    content = <Redirect to={loginPath(location.pathname + location.search)} />;
  } else {
    // Keyed by path: moving between two plugins (or two detail pages) starts afresh.
    content = (
      <Layout identity={identity} route={route}>
        <div key={location.pathname} class="page">
          {page(route, identity)}
        </div>
      </Layout>
    );
  }
  return (
    <>
      {content}
      <Toasts />
    </>
  );
}
