// Gated twice: portero answers 403 at the edge to a session without the
// `admin` role (the Envoy route is named `admin`), and the page checks again.
import type { Handlers, PageProps } from "../lib/fresh.ts";

export const handler: Handlers = {
  GET(_req, ctx) {
    if (!ctx.state.user?.roles.includes("admin")) {
      return new Response("admin only", { status: 403 });
    }
    return ctx.render();
  },
};

export default function Admin({ state }: PageProps) {
  return (
    <>
      <h1 id="admin-title">Admin</h1>
      <p>
        Signed in as {state.user?.email} with the roles {state.user?.roles.join(", ")}.
      </p>
    </>
  );
}
