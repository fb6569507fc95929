// The account page: rendered from the API's answer to a server-side call
// made with the forwarded access JWT, plus an island that asks again from
// the browser.
import { accessTokenInfo, fetchAccount } from "../lib/api.ts";
import { type Handlers, Island, type PageProps } from "../lib/fresh.ts";
import type { ApiResult } from "../lib/api.ts";

export const handler: Handlers<ApiResult> = {
  async GET(req, ctx) {
    const result = await fetchAccount(ctx.config, ctx.state, req.headers.get("user-agent"));
    return ctx.render(result, { status: result.ok ? 200 : 502 });
  },
};

export default function AccountPage({ data, state }: PageProps<ApiResult>) {
  const token = accessTokenInfo(state.authorization);
  if (!data.ok) {
    return (
      <>
        <h1>Account</h1>
        <p class="error" id="api-error">The API answered {data.status}: {data.detail}</p>
      </>
    );
  }
  const account = data.account;
  return (
    <>
      <h1>Account</h1>
      <p>What the API answered to this server's call with your forwarded access token:</p>
      <dl id="api-account">
        <dt>User id</dt>
        <dd id="api-user-id">{account.user_id}</dd>
        <dt>Email</dt>
        <dd id="api-email">{account.email}</dd>
        <dt>Roles</dt>
        <dd>{account.roles.join(", ")}</dd>
        <dt>Access token</dt>
        <dd>
          <code id="token-id">{token?.jti ?? "none"}</code>, valid until{" "}
          <span id="token-exp">{token ? new Date(token.exp * 1000).toISOString() : "—"}</span>{" "}
          (renewed by the edge when it expires; the cookie stays the same)
        </dd>
      </dl>
      <Island name="AccountRefresher" props={{ email: account.email }} />
    </>
  );
}
