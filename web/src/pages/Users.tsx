import { useEffect, useState } from "preact/hooks";
import { api, seg } from "../api/client";
import type { Identity, User } from "../api/types";
import { CreateUserForm } from "../components/CreateUserForm";
import { ConfirmDialog, Dialog } from "../components/Dialog";
import { LoginHistory } from "../components/LoginHistory";
import { PageHeading } from "../components/PageHeading";
import { EmptyState, LoadError, Loading } from "../components/Status";
import { formatTimestamp } from "../format";
import { showToast } from "../toasts";

type Pending =
  | { kind: "role"; user: User }
  | { kind: "deactivate"; user: User }
  | { kind: "delete"; user: User }
  | { kind: "reset"; user: User };

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** /users: the database users, what administrators can do to them, and the login history. */
export function UsersPage({ identity }: { identity: Identity }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [reload, setReload] = useState(0);
  const [pending, setPending] = useState<Pending | null>(null);
  const [busy, setBusy] = useState(false);
  const [newPassword, setNewPassword] = useState("");
  const [dialogError, setDialogError] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    api.get<{ users: User[] }>("/api/users").then(
      (answer) => {
        if (!alive) return;
        setUsers(answer.users);
        setFailure(null);
      },
      (error: unknown) => alive && setFailure(message(error)),
    );
    return () => {
      alive = false;
    };
  }, [reload]);

  const refresh = () => setReload((n) => n + 1);
  const replace = (user: User) => setUsers((current) => current?.map((u) => (u.id === user.id ? user : u)) ?? null);

  function ask(next: Pending) {
    setDialogError(null);
    setNewPassword("");
    setPending(next);
  }

  async function update(user: User, change: Partial<Pick<User, "role" | "is_active">> & { password?: string }, done: string) {
    const updated = await api.put<User>(`/api/users/${seg(user.id)}`, change);
    replace(updated);
    showToast(done, "success");
  }

  /** Carry out the confirmed action; errors stay in the dialog (and a toast). */
  async function confirm() {
    if (!pending) return;
    const { kind, user } = pending;
    setBusy(true);
    setDialogError(null);
    try {
      if (kind === "role") {
        const role = user.role === "admin" ? "client" : "admin";
        await update(user, { role }, `${user.username} is now ${role === "admin" ? "an administrator" : "a client"}`);
      } else if (kind === "deactivate") {
        await update(user, { is_active: false }, `${user.username} is deactivated`);
      } else if (kind === "reset") {
        await update(user, { password: newPassword }, `Password of ${user.username} reset; their sessions ended`);
      } else {
        await api.del(`/api/users/${seg(user.id)}`);
        setUsers((current) => current?.filter((u) => u.id !== user.id) ?? null);
        showToast(`Deleted user ${user.username}`, "success");
      }
      setPending(null);
      setReload((n) => n + 1);
    } catch (error) {
      setDialogError(message(error));
      showToast(`Could not change ${user.username}: ${message(error)}`, "error");
    } finally {
      setBusy(false);
    }
  }

  async function activate(user: User) {
    try {
      await update(user, { is_active: true }, `${user.username} can log in again`);
    } catch (error) {
      showToast(`Could not activate ${user.username}: ${message(error)}`, "error");
    }
  }

  let list;
  if (failure && !users) list = <LoadError message={`Could not load the users: ${failure}`} retry={refresh} />;
  else if (!users) list = <Loading what="Loading users…" />;
  else if (!users.length)
    list = (
      <EmptyState title="No users yet">
        <p>Only the administrator from ADMIN_PASSWORD can log in. Create accounts for other people below.</p>
      </EmptyState>
    );
  else
    list = (
      <div class="table-wrap">
        <table class="table users-table">
          <caption class="visually-hidden">Users</caption>
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
              <th scope="col">Password changed</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.map((user) => {
              const self = identity.id === user.id;
              return (
                <tr key={user.id} data-testid={`user-row-${user.username}`} class={user.is_active ? "" : "row-disabled"}>
                  <th scope="row" class="cell-user">
                    <div class="cell-flex">
                      <span class="user-avatar" aria-hidden="true">
                        {user.username.charAt(0).toUpperCase()}
                      </span>
                      <span>
                        <span class="cell-main">
                          {user.username}
                          {self && <span class="badge badge-muted">you</span>}
                        </span>
                        {user.display_name && <span class="cell-sub">{user.display_name}</span>}
                      </span>
                    </div>
                  </th>
                  <td data-label="Role">
                    <span class={`badge ${user.role === "admin" ? "badge-accent" : "badge-muted"}`}>{user.role}</span>
                  </td>
                  <td data-label="Status">
                    <span class={`badge ${user.is_active ? "badge-good" : "badge-bad"}`}>{user.is_active ? "active" : "deactivated"}</span>
                  </td>
                  <td data-label="Password changed">{formatTimestamp(user.password_changed_at)}</td>
                  <td class="cell-actions">
                    <div class="button-row">
                      <button type="button" class="button button-small" onClick={() => ask({ kind: "role", user })}>
                        {user.role === "admin" ? "Make client" : "Make admin"}
                        <span class="visually-hidden"> {user.username}</span>
                      </button>
                      {user.is_active ? (
                        <button type="button" class="button button-small" onClick={() => ask({ kind: "deactivate", user })}>
                          Deactivate<span class="visually-hidden"> {user.username}</span>
                        </button>
                      ) : (
                        <button type="button" class="button button-small" onClick={() => void activate(user)}>
                          Activate<span class="visually-hidden"> {user.username}</span>
                        </button>
                      )}
                      <button type="button" class="button button-small" onClick={() => ask({ kind: "reset", user })}>
                        Reset password<span class="visually-hidden"> of {user.username}</span>
                      </button>
                      <button type="button" class="button button-small button-danger-quiet" onClick={() => ask({ kind: "delete", user })}>
                        Delete<span class="visually-hidden"> {user.username}</span>
                      </button>
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    );

  const close = () => !busy && setPending(null);
  const who = pending?.user.username ?? "";
  return (
    <section>
      <PageHeading title="Users">Users</PageHeading>
      <p class="lead">People who can log in to Toru. The administrator from ADMIN_PASSWORD is not listed here.</p>
      {list}
      <CreateUserForm onCreated={refresh} />
      <LoginHistory refresh={reload} />

      <ConfirmDialog
        open={pending?.kind === "role"}
        title={pending?.user.role === "admin" ? `Make ${who} a client?` : `Make ${who} an administrator?`}
        confirmLabel={pending?.user.role === "admin" ? "Make client" : "Make admin"}
        danger={pending?.user.role === "admin"}
        busy={busy}
        onConfirm={confirm}
        onCancel={close}
      >
        <p>
          {pending?.user.role === "admin"
            ? `${who} will lose access to plugin management, users and the supervisor from their next request.`
            : `${who} will be able to manage plugins and users, including yours.`}
        </p>
        {dialogError && <p class="form-error" role="alert">{dialogError}</p>}
      </ConfirmDialog>

      <ConfirmDialog
        open={pending?.kind === "deactivate"}
        title={`Deactivate ${who}?`}
        confirmLabel="Deactivate"
        danger
        busy={busy}
        onConfirm={confirm}
        onCancel={close}
      >
        <p>{who} is signed out everywhere and cannot log in until activated again.</p>
        {dialogError && <p class="form-error" role="alert">{dialogError}</p>}
      </ConfirmDialog>

      <ConfirmDialog
        open={pending?.kind === "delete"}
        title={`Delete ${who}?`}
        confirmLabel="Delete"
        danger
        busy={busy}
        onConfirm={confirm}
        onCancel={close}
      >
        <p>The account and its sessions are removed for good. Its login history stays.</p>
        {dialogError && <p class="form-error" role="alert">{dialogError}</p>}
      </ConfirmDialog>

      <Dialog open={pending?.kind === "reset"} title={`Reset the password of ${who}`} onClose={close}>
        <form
          onSubmit={(event) => {
            event.preventDefault();
            void confirm();
          }}
        >
          <p>Their sessions end, and any login lock on the name is cleared. Tell them the new password.</p>
          {/* For password managers: whose password this is. */}
          <input type="text" autocomplete="username" value={who} readOnly hidden />
          <div class="field">
            <label for="reset-password">New password</label>
            <input
              id="reset-password"
              type="password"
              autocomplete="new-password"
              value={newPassword}
              aria-invalid={dialogError ? "true" : undefined}
              onInput={(event) => setNewPassword(event.currentTarget.value)}
            />
          </div>
          {dialogError && <p class="form-error" role="alert">{dialogError}</p>}
          <div class="dialog-actions">
            <button type="button" class="button" onClick={close} disabled={busy}>
              Cancel
            </button>
            <button type="submit" class="button button-danger" disabled={busy} aria-busy={busy ? "true" : undefined}>
              Reset password
            </button>
          </div>
        </form>
      </Dialog>
    </section>
  );
}
