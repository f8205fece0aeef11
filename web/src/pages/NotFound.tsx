import { Link } from "../components/Link";
import { PageHeading } from "../components/PageHeading";

/** The 404 page: unknown paths, disabled or unknown plugins, admin pages for others. */
export function NotFoundPage({ reason }: { reason?: string }) {
  return (
    <section class="not-found" data-testid="not-found">
      <p class="not-found-code" aria-hidden="true">
        404
      </p>
      <PageHeading title="Page not found">Page not found</PageHeading>
      <p class="muted">{reason ?? "There is nothing here: the address is wrong, or the plugin is disabled or gone."}</p>
      <p>
        <Link href="/" class="button">
          Go to the start page
        </Link>
      </p>
    </section>
  );
}
