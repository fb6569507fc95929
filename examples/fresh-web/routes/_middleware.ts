// Runs before every route: who is signed in comes from portero's identity
// headers (the edge removes any a client sends), never from the cookie,
// which this app cannot read. Every page is private to its viewer, so none
// may be stored: after logout, Back must not show the last user's page.
import type { Context } from "../lib/fresh.ts";

export async function handler(req: Request, ctx: Context): Promise<Response> {
  const id = req.headers.get("x-portero-user-id");
  ctx.state.user = id
    ? {
      id,
      email: req.headers.get("x-portero-email") ?? "",
      roles: (req.headers.get("x-portero-roles") ?? "").split(",").filter(Boolean),
      session: req.headers.get("x-portero-session") ?? "",
    }
    : null;
  ctx.state.authorization = req.headers.get("authorization");
  const response = await ctx.next();
  response.headers.set("cache-control", "no-store");
  return response;
}
