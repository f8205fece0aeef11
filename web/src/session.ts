// Who is logged in. `null` once we know nobody is; `undefined` until we asked.

import type { Identity } from "./api/types";
import { createStore } from "./store";

export type SessionState = Identity | null | undefined;

export const sessionStore = createStore<SessionState, SessionState>((_, next) => next, undefined);

export const isAdmin = (identity: SessionState): boolean => identity?.role === "admin";
