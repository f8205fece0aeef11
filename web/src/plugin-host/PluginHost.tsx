import { useEffect, useRef, useState } from "preact/hooks";
import type { Identity } from "../api/types";
import { Link } from "../components/Link";
import { Loading } from "../components/Status";
import { navigate } from "../router/router";
import { showToast } from "../toasts";
import { forgetBundle, loadBundle } from "./loader";
import { createPluginApi } from "./pluginApi";

interface Props {
  id: string;
  route: string;
  identity: Identity;
}

type Phase = { kind: "loading" } | { kind: "mounted" } | { kind: "failed"; reason: string };

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Runs the plugin's bundle and mounts it into an element of its own; unmounts it
 * when this component goes (another page, or the plugin was disabled).
 */
export function PluginHost({ id, route, identity }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const [phase, setPhase] = useState<Phase>({ kind: "loading" });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    let alive = true;
    let unmount: (() => void) | null = null;
    const fail = (reason: string) => {
      if (alive) setPhase({ kind: "failed", reason });
    };
    setPhase({ kind: "loading" });
    loadBundle(id).then(
      (registration) => {
        if (!alive) return;
        const api = createPluginApi({ id, route }, identity, { navigate, showToast });
        try {
          const result = registration.mount(element, api);
          unmount = () => {
            try {
              registration.unmount?.(element);
            } catch (error) {
              console.error(`plugin ${id}: unmount() threw`, error);
            }
          };
          setPhase({ kind: "mounted" });
          // An async mount that rejects is as broken as one that throws.
          if (result && typeof (result as Promise<unknown>).then === "function") {
            (result as Promise<unknown>).then(undefined, (error: unknown) => {
              unmount?.();
              unmount = null;
              element.replaceChildren();
              fail(`mount() failed: ${describe(error)}`);
            });
          }
        } catch (error) {
          // Let it clean up what it started before it threw, then take the element back.
          try {
            registration.unmount?.(element);
          } catch {
            /* it is broken already; the reason shown is the first one */
          }
          element.replaceChildren();
          fail(`mount() threw: ${describe(error)}`);
        }
      },
      (error: unknown) => fail(describe(error)),
    );
    return () => {
      alive = false;
      unmount?.();
    };
  }, [id, route, attempt, identity.username, identity.role]);

  const retry = () => {
    forgetBundle(id);
    setPhase({ kind: "loading" });
    setAttempt((n) => n + 1);
  };

  return (
    <div class="plugin-host">
      {phase.kind === "loading" && <Loading what="Loading the plugin…" />}
      {phase.kind === "failed" ? (
        <div class="panel panel-error plugin-error" data-testid="plugin-error">
          <h2 class="panel-title">This plugin's page could not be shown</h2>
          <p class="plugin-error-reason">{phase.reason}</p>
          <p class="panel-actions">
            <button type="button" class="button" onClick={retry}>
              Try again
            </button>
            {identity.role === "admin" && (
              <Link href={`/plugins/${encodeURIComponent(id)}`} class="button button-quiet">
                See the plugin's logs and events
              </Link>
            )}
          </p>
        </div>
      ) : (
        <div ref={container} class="plugin-mount" data-testid="plugin-mount" data-plugin-id={id} />
      )}
    </div>
  );
}
