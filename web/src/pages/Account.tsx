import { useState } from "preact/hooks";
import { api, ApiError } from "../api/client";
import type { Identity } from "../api/types";
import { LockoutMessage, lockEnd } from "../components/Lockout";
import { PageHeading } from "../components/PageHeading";
import { showToast } from "../toasts";

type Problem = { kind: "error"; message: string; field?: string } | { kind: "locked"; until: number } | null;

/** /account: who you are, and changing your own password (database users only). */
export function AccountPage({ identity }: { identity: Identity }) {
  const fromEnvironment = identity.source === "environment";
  return (
    <section>
      <PageHeading title="Account">Account</PageHeading>
      <section class="card-section" aria-labelledby="me-title">
        <h2 id="me-title" class="section-title">
          You
        </h2>
        <dl class="kv">
          <div class="kv-row">
            <dt>Username</dt>
            <dd>{identity.username}</dd>
          </div>
          <div class="kv-row">
            <dt>Display name</dt>
            <dd>{identity.display_name || "—"}</dd>
          </div>
          <div class="kv-row">
            <dt>Role</dt>
            <dd>{identity.role === "admin" ? "Administrator" : "Client"}</dd>
          </div>
          <div class="kv-row">
            <dt>Account</dt>
            <dd>{fromEnvironment ? "from the server's environment (ADMIN_USERNAME, ADMIN_PASSWORD)" : "stored in Toru's database"}</dd>
          </div>
        </dl>
      </section>
      {fromEnvironment ? (
        <section class="card-section" aria-labelledby="password-title">
          <h2 id="password-title" class="section-title">
            Password
          </h2>
          <div class="panel panel-info" data-testid="environment-admin-note">
            <p>
              Your password cannot be changed here: you are the environment administrator, whose password comes from the{" "}
              <code>ADMIN_PASSWORD</code> environment variable of the Toru server. Change it there and restart Toru.
            </p>
          </div>
        </section>
      ) : (
        <PasswordForm username={identity.username} />
      )}
    </section>
  );
}

function PasswordForm({ username }: { username: string }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [show, setShow] = useState(false);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem>(null);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const answer = await api.post<{ message?: string }>("/api/auth/password", {
        current_password: current,
        new_password: next,
      });
      setCurrent("");
      setNext("");
      showToast(answer?.message ? `Password changed: ${answer.message.replace(/^password changed; /, "")}` : "Password changed", "success");
    } catch (error) {
      if (error instanceof ApiError && error.status === 429) setProblem({ kind: "locked", until: lockEnd(error) });
      else if (error instanceof ApiError) setProblem({ kind: "error", message: error.message, field: error.field });
      else setProblem({ kind: "error", message: String(error) });
    } finally {
      setBusy(false);
    }
  }

  const invalid = (field: string) => (problem?.kind === "error" && problem.field === field ? "true" : undefined);
  return (
    <form class="card-section narrow-form" onSubmit={submit} aria-labelledby="password-title">
      <h2 id="password-title" class="section-title">
        Change your password
      </h2>
      <p class="muted">Your other sessions end; this one stays signed in.</p>
      {/* For password managers: whose password this is. */}
      <input type="text" autocomplete="username" value={username} readOnly hidden />
      <div class="field">
        <label for="current-password">Current password</label>
        <SecretInput
          id="current-password"
          show={show}
          autocomplete="current-password"
          value={current}
          invalid={invalid("current_password")}
          onValue={setCurrent}
        />
      </div>
      <div class="field">
        <label for="new-own-password">New password</label>
        <SecretInput
          id="new-own-password"
          show={show}
          autocomplete="new-password"
          value={next}
          invalid={invalid("new_password")}
          describedBy="new-own-password-hint"
          onValue={setNext}
        />
        <p id="new-own-password-hint" class="hint">
          At least 8 characters
        </p>
      </div>
      <label class="checkbox-field">
        <input type="checkbox" checked={show} onChange={(event) => setShow(event.currentTarget.checked)} />
        <span>Show passwords</span>
      </label>
      {problem && (
        <p class="form-error" role="alert">
          {problem.kind === "locked" ? <LockoutMessage until={problem.until} /> : problem.message}
        </p>
      )}
      <button type="submit" class="button button-primary" disabled={busy} aria-busy={busy ? "true" : undefined}>
        Change password
      </button>
    </form>
  );
}

interface SecretProps {
  id: string;
  show: boolean;
  autocomplete: string;
  value: string;
  invalid?: "true";
  describedBy?: string;
  onValue: (value: string) => void;
}

/** A password input that "Show passwords" turns into a text input. */
function SecretInput({ id, show, autocomplete, value, invalid, describedBy, onValue }: SecretProps) {
  const common = {
    id,
    autocomplete,
    value,
    spellcheck: false,
    "aria-invalid": invalid,
    "aria-describedby": describedBy,
    onInput: (event: Event) => onValue((event.currentTarget as HTMLInputElement).value),
  };
  return show ? <input type="text" {...common} /> : <input type="password" {...common} />;
}
