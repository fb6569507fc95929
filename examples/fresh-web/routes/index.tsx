// The home page: behind a `required` route, so portero has already checked
// the session (or sent the browser to /login) before this runs.
import type { PageProps } from "../lib/fresh.ts";

export default function Home({ state }: PageProps) {
  const user = state.user;
  if (!user) {
    // Only reachable if the edge's route policy was loosened by mistake.
    return <p>Nobody is signed in.</p>;
  }
  return (
    <>
      <h1 id="greeting">Hello, {user.email}</h1>
      <dl>
        <dt>User id</dt>
        <dd id="user-id">{user.id}</dd>
        <dt>Roles</dt>
        <dd id="roles">{user.roles.join(", ") || "none"}</dd>
      </dl>
      <p>
        Your <a href="/account">account</a>{" "}
        page asks the API, server-side, with the access token the edge forwarded. The{" "}
        <a href="/admin">admin</a> page needs the <code>admin</code> role.
      </p>
    </>
  );
}
