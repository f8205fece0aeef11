// Rendering a component into jsdom for a test, and waiting for what it does next.

import { render, type ComponentChild } from "preact";
import { act } from "preact/test-utils";

export interface Rendered {
  container: HTMLElement;
  unmount: () => void;
}

export function mount(vnode: ComponentChild): Rendered {
  const container = document.createElement("div");
  document.body.appendChild(container);
  act(() => render(vnode, container));
  return {
    container,
    unmount: () => {
      act(() => render(null, container));
      container.remove();
    },
  };
}

/** Let pending promises settle and effects run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await act(async () => {
      await Promise.resolve();
    });
  }
}

export const byTestId = (root: ParentNode, id: string) => root.querySelector<HTMLElement>(`[data-testid="${id}"]`);
