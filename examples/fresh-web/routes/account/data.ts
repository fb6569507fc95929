// JSON for the AccountRefresher island: the same server-side API call.
import { fetchAccount } from "../../lib/api.ts";
import type { Handlers } from "../../lib/fresh.ts";

export const handler: Handlers = {
  async GET(req, ctx) {
    const result = await fetchAccount(ctx.config, ctx.state, req.headers.get("user-agent"));
    return Response.json(result.ok ? result.account : { error: result.detail }, {
      status: result.ok ? 200 : 502,
    });
  },
};
