// A minimal observable store and the hook that reads it: enough for the few pieces
// of state the whole app shares (the plugin stream, toasts, the session).

import { useEffect, useState } from "preact/hooks";

export interface Store<S, A> {
  getState(): S;
  dispatch(action: A): void;
  subscribe(listener: (state: S) => void): () => void;
}

export function createStore<S, A>(reducer: (state: S, action: A) => S, initial: S): Store<S, A> {
  let state = initial;
  const listeners = new Set<(state: S) => void>();
  return {
    getState: () => state,
    dispatch(action) {
      const next = reducer(state, action);
      if (next === state) return;
      state = next;
      for (const listener of [...listeners]) listener(state);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
}

/** The selected part of a store's state; re-renders when it changes (by `Object.is`). */
export function useStore<S, A, T>(store: Store<S, A>, select: (state: S) => T): T {
  const [value, setValue] = useState(() => select(store.getState()));
  useEffect(() => {
    const update = (state: S) => setValue(() => select(state));
    update(store.getState());
    return store.subscribe(update);
    // `select` is expected to be stable (a module-level function or a memoised one).
  }, [store, select]);
  return value;
}
