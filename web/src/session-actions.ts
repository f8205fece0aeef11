// Signing in and out, and what happens when the server says the session is gone.

import { api, ApiError, setUnauthorizedHandler } from "./api/client";
import type { Identity } from "./api/types";
import { navigate } from "./router/router";
import { sessionStore } from "./session";
import { startStream, stopStream } from "./stream/store";
import { showToast } from "./toasts";

function become(identity: Identity | null): void {
  const before = sessionStore.getState();
  if (identity === null) stopStream();
  else if (before && before.username !== identity.username) stopStream();
  sessionStore.dispatch(identity);
  if (identity) startStream();
}

/** Ask the server who we are (on start-up). */
export async function checkSession(): Promise<void> {
  try {
    become(await api.get<Identity>("/api/auth/me", { allow401: true }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) become(null);
    else {
      // The server is unreachable or broken: say so on the login page rather than spin.
      become(null);
      showToast(error instanceof Error ? error.message : String(error), "error");
    }
  }
}

/** Log in; resolves to the identity or rejects with the server's ApiError. */
export async function signIn(username: string, password: string): Promise<Identity> {
  const identity = await api.post<Identity>("/api/auth/login", { username, password }, { allow401: true });
  become(identity);
  return identity;
}

export async function signOut(): Promise<void> {
  try {
    await api.post("/api/auth/logout", undefined, { allow401: true });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) {
      showToast(`Could not sign out: ${error instanceof Error ? error.message : String(error)}`, "error");
      return;
    }
  }
  navigate("/login");
  become(null);
}

/** Install the "session expired" reaction: forget the user; the app then shows /login. */
export function watchSession(): void {
  setUnauthorizedHandler(() => {
    if (!sessionStore.getState()) return;
    become(null);
    showToast("Your session has ended; please sign in again.", "info");
  });
}
