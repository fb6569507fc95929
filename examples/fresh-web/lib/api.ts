// Server-side calls to the Fastify API, through the edge like any client's:
// with the access JWT portero forwarded for this request, so the API sees the
// same session through the bearer flow (the seed's web → Fresh → Fastify).
import type { AppConfig, State } from "./fresh.ts";

export interface Account {
  user_id: string;
  email: string;
  roles: string[];
  session: string;
}

export type ApiResult =
  | { ok: true; account: Account }
  | { ok: false; status: number; detail: string };

/**
 * `jti` and `exp` of the forwarded access token, for display. Not verified
 * here: portero verified it at the edge, and the API verifies it again.
 */
export function accessTokenInfo(authorization: string | null): { jti: string; exp: number } | null {
  const payload = authorization?.match(/^Bearer [^.]+\.([^.]+)\./)?.[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replaceAll("-", "+").replaceAll("_", "/"));
    const claims = JSON.parse(json);
    return { jti: String(claims.jti), exp: Number(claims.exp) };
  } catch {
    return null;
  }
}

export async function fetchAccount(
  config: AppConfig,
  state: State,
  userAgent: string | null,
): Promise<ApiResult> {
  if (!state.authorization) {
    return { ok: false, status: 401, detail: "the edge forwarded no access token" };
  }
  try {
    const response = await fetch(`${config.apiUrl}/me`, {
      headers: {
        authorization: state.authorization,
        accept: "application/json",
        // The session is bound to the browser's User-Agent at login; this
        // call is made on the browser's behalf.
        ...(userAgent ? { "user-agent": userAgent } : {}),
      },
      signal: AbortSignal.timeout(3000),
    });
    if (!response.ok) {
      return { ok: false, status: response.status, detail: await response.text() };
    }
    const me = await response.json();
    return {
      ok: true,
      account: { user_id: me.user_id, email: me.email, roles: me.roles, session: me.session },
    };
  } catch (error) {
    return { ok: false, status: 502, detail: String(error) };
  }
}
