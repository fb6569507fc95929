import type { ComponentChildren } from "preact";
import type { State } from "../lib/fresh.ts";

const STYLE = `
body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #1d2430; }
header { display: flex; gap: 1rem; align-items: center; border-bottom: 1px solid #d8dde6; padding-bottom: .75rem; margin-bottom: 1.5rem; }
header strong { margin-right: auto; }
a { color: #1f5fbf; }
form.inline { display: inline; }
button { font: inherit; padding: .35rem .9rem; border: 1px solid #1f5fbf; background: #1f5fbf; color: white; border-radius: 4px; cursor: pointer; }
label { display: block; margin: .75rem 0; }
input { font: inherit; display: block; padding: .35rem; width: 18rem; }
.error { color: #a1261b; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
code { word-break: break-all; }
`;

export default function App({ state, children }: { state: State; children: ComponentChildren }) {
  const user = state.user;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>portero demo</title>
        <style nonce={state.nonce}>{STYLE}</style>
      </head>
      <body>
        <header>
          <strong>portero demo</strong>
          {user
            ? (
              <>
                <a href="/">Home</a>
                <a href="/account">Account</a>
                <a href="/admin">Admin</a>
                <form class="inline" method="post" action="/auth/logout">
                  <button id="logout" type="submit">Log out</button>
                </form>
              </>
            )
            : <a href="/login">Log in</a>}
        </header>
        <main>{children}</main>
      </body>
    </html>
  );
}
