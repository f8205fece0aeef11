import { useState } from "preact/hooks";
import { api, ApiError } from "../api/client";
import type { Role, User } from "../api/types";
import { showToast } from "../toasts";

/** Username, display name, password, role → POST /api/users. */
export function CreateUserForm({ onCreated }: { onCreated: (user: User) => void }) {
  const [username, setUsername] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("client");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const user = await api.post<User>("/api/users", { username, password, role, display_name: displayName });
      showToast(`Created user ${user.username}`, "success");
      setUsername("");
      setDisplayName("");
      setPassword("");
      setRole("client");
      onCreated(user);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure : new ApiError(0, String(failure)));
    } finally {
      setBusy(false);
    }
  }

  const invalid = (field: string) => (error?.field === field ? "true" : undefined);
  return (
    <form class="card-section form-grid" onSubmit={submit} aria-labelledby="create-title">
      <h2 id="create-title" class="section-title form-grid-full">
        Create a user
      </h2>
      <div class="field">
        <label for="new-username">Username</label>
        <input
          id="new-username"
          autocomplete="off"
          autocapitalize="none"
          spellcheck={false}
          value={username}
          aria-invalid={invalid("username")}
          aria-describedby="new-username-hint"
          onInput={(event) => setUsername(event.currentTarget.value)}
        />
        <p id="new-username-hint" class="hint">
          Lower case letters, digits, . _ @ -
        </p>
      </div>
      <div class="field">
        <label for="new-display-name">Display name</label>
        <input
          id="new-display-name"
          autocomplete="off"
          value={displayName}
          aria-invalid={invalid("display_name")}
          onInput={(event) => setDisplayName(event.currentTarget.value)}
        />
        <p class="hint">Optional</p>
      </div>
      <div class="field">
        <label for="new-password">Password</label>
        <input
          id="new-password"
          type="password"
          autocomplete="new-password"
          value={password}
          aria-invalid={invalid("password")}
          onInput={(event) => setPassword(event.currentTarget.value)}
        />
        <p class="hint">At least 8 characters</p>
      </div>
      <div class="field">
        <label for="new-role">Role</label>
        <select id="new-role" value={role} onChange={(event) => setRole(event.currentTarget.value as Role)}>
          <option value="client">Client</option>
          <option value="admin">Administrator</option>
        </select>
      </div>
      {error && (
        <p class="form-error form-grid-full" role="alert">
          {error.message}
        </p>
      )}
      <div class="form-grid-full">
        <button type="submit" class="button button-primary" disabled={busy} aria-busy={busy ? "true" : undefined}>
          Create user
        </button>
      </div>
    </form>
  );
}
