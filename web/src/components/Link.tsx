import type { AnchorHTMLAttributes } from "preact";
import { isPlainClick, navigate } from "../router/router";

type Props = AnchorHTMLAttributes<HTMLAnchorElement> & { href: string };

/** An ordinary link that moves the UI without reloading (new tabs etc. still work). */
export function Link({ href, onClick, target, ...rest }: Props) {
  return (
    <a
      {...rest}
      href={href}
      target={target}
      onClick={(event) => {
        onClick?.(event);
        if (!target && isPlainClick(event)) {
          event.preventDefault();
          navigate(href);
        }
      }}
    />
  );
}
