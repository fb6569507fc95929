// The login form posts to the API's /auth/login through the edge; the API
// answers with a redirect and the session-start header, which portero turns
// into the session cookie. This app never sees a password or a cookie.
import type { Handlers, PageProps } from "../lib/fresh.ts";

/** A same-site path to go back to, or "/": never another origin. */
export function safeReturnPath(value: string | null): string {
  // deno-lint-ignore no-control-regex
  if (!value || !value.startsWith("/") || value.startsWith("//") || /[\\\x00-\x1f]/.test(value)) {
    return "/";
  }
  return value;
}

/** Whether the edge also signs people in with the organisation's OpenID
 * Connect provider (portero's sidecar, at /.portero/oidc/). */
const PROVIDER_SIGN_IN = Deno.env.get("PROVIDER_SIGN_IN") === "1";

export const handler: Handlers = {
  GET(_req, ctx) {
    const returnTo = safeReturnPath(ctx.url.searchParams.get("return_to"));
    // Signed in already (the route is `optional`): go where you were going.
    if (ctx.state.user) {
      return new Response(null, { status: 303, headers: { location: returnTo } });
    }
    return ctx.render();
  },
};

export default function Login({ url }: PageProps) {
  const returnTo = safeReturnPath(url.searchParams.get("return_to"));
  const error = url.searchParams.get("error");
  const signedOut = url.searchParams.has("signed_out");
  return (
    <>
      <h1>Log in</h1>
      {signedOut && <p id="signed-out">You are signed out.</p>}
      {/* role="alert": a screen reader announces the error as the page loads. */}
      {error && (
        <p class="error" id="login-error" role="alert">
          Wrong user name or password.
        </p>
      )}
      <form method="post" action="/auth/login" id="login-form">
        <input type="hidden" name="client" value="web" />
        <input type="hidden" name="return_to" value={returnTo} />
        <label>
          User name{" "}
          <input
            name="username"
            autocomplete="username"
            required
            aria-invalid={error ? "true" : undefined}
            aria-describedby={error ? "login-error" : undefined}
          />
        </label>
        <label>
          Password{" "}
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            aria-invalid={error ? "true" : undefined}
            aria-describedby={error ? "login-error" : undefined}
          />
        </label>
        <button type="submit" id="login-submit">Log in</button>
      </form>
      <p>Demo users: ada / lovelace (admin), alan / turing.</p>
      {PROVIDER_SIGN_IN && (
        <p>
          <a
            id="provider-sign-in"
            href={`/.portero/oidc/start?return_to=${encodeURIComponent(returnTo)}`}
          >
            Sign in with your organisation
          </a>{" "}
          (the demo provider's users: grace / hopper, alan / turing).
        </p>
      )}
    </>
  );
}
