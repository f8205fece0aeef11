import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "../api/client";
import { LockoutMessage, lockEnd } from "../components/Lockout";
import { signIn } from "../session-actions";

type Problem = { kind: "error"; message: string } | { kind: "locked"; until: number } | null;

/** Username, password, Sign in. Errors in words; a lock-out counts down live. */
export function LoginPage() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem>(null);
  const passwordRef = useRef<HTMLInputElement>(null);
  const usernameRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    document.title = "Sign in · Toru";
    usernameRef.current?.focus();
  }, []);

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    if (!username.trim() || !password) {
      setProblem({ kind: "error", message: "enter your username and password" });
      (username.trim() ? passwordRef : usernameRef).current?.focus();
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      await signIn(username, password);
      // The app now sees a session and moves on to where the user was going.
    } catch (error) {
      setBusy(false);
      setPassword("");
      if (error instanceof ApiError && error.status === 429) setProblem({ kind: "locked", until: lockEnd(error) });
      else setProblem({ kind: "error", message: error instanceof Error ? error.message : String(error) });
      passwordRef.current?.focus();
    }
  }

  return (
    <div class="login">
      <main class="login-card">
        <p class="login-brand">
          <span class="brand-mark" aria-hidden="true" />
          Toru
        </p>
        <h1 class="login-title">Sign in to Toru</h1>
        <form onSubmit={submit} noValidate>
          <div class="field">
            <label for="login-username">Username</label>
            <input
              ref={usernameRef}
              id="login-username"
              name="username"
              autocomplete="username"
              autocapitalize="none"
              spellcheck={false}
              value={username}
              onInput={(event) => setUsername(event.currentTarget.value)}
              aria-invalid={problem?.kind === "error" ? "true" : undefined}
            />
          </div>
          <div class="field">
            <label for="login-password">Password</label>
            <input
              ref={passwordRef}
              id="login-password"
              name="password"
              type="password"
              autocomplete="current-password"
              value={password}
              onInput={(event) => setPassword(event.currentTarget.value)}
              aria-invalid={problem?.kind === "error" ? "true" : undefined}
            />
          </div>
          {problem && (
            <div class="form-error" role="alert">
              {problem.kind === "locked" ? <LockoutMessage until={problem.until} /> : problem.message}
            </div>
          )}
          <button type="submit" class="button button-primary button-block" aria-busy={busy ? "true" : undefined} disabled={busy}>
            Sign in
          </button>
        </form>
      </main>
    </div>
  );
}
