// Demo upstream behind portero (Fastify).
//
// The app never touches cookie crypto: on a web login it answers with the
// internal header `x-portero-start-session: <session id>` and the filter turns
// it into the Set-Cookie; on logout it answers `x-portero-end-session: 1` and
// the filter clears the cookie. App clients get the sidecar's access JWT in
// the login body. Identity arrives from the filter as x-portero-* headers.
import Fastify from "fastify";

const config = {
  host: process.env.HOST ?? "127.0.0.1",
  port: Number(process.env.PORT ?? 3000),
  sidecarUrl: process.env.SIDECAR_URL ?? "http://127.0.0.1:7070",
  adminToken: process.env.PORTERO_ADMIN_TOKEN,
  startHeader: process.env.SESSION_START_HEADER ?? "x-portero-start-session",
  endHeader: process.env.SESSION_END_HEADER ?? "x-portero-end-session",
};

if (!config.adminToken) {
  console.error("PORTERO_ADMIN_TOKEN is required (the sidecar's admin credential)");
  process.exit(2);
}

// A small demo user list. A real app checks a password hash in its database.
const USERS = {
  ada: { id: "user-ada", password: "lovelace", email: "ada@example.com", roles: ["admin", "dev"] },
  alan: { id: "user-alan", password: "turing", email: "alan@example.com", roles: ["dev"] },
};

async function sidecar(method, path, body) {
  const response = await fetch(config.sidecarUrl + path, {
    method,
    headers: {
      authorization: `Bearer ${config.adminToken}`,
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(2000),
  });
  const json = await response.json().catch(() => ({}));
  return { status: response.status, json };
}

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? "info" } });

app.get("/healthz", async () => ({ status: "ok" }));

// The web front end's forms post here directly (through the edge): the
// answer to a form is a redirect, with the session header on a login.
app.addContentTypeParser(
  "application/x-www-form-urlencoded",
  { parseAs: "string", bodyLimit: 4096 },
  (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body))),
);
const isForm = (request) =>
  (request.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded");

/** A same-site path to send the browser back to, or "/": never another origin. */
function safeReturnPath(value) {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//")) return "/";
  return /[\\\x00-\x1f]/.test(value) ? "/" : value;
}

/**
 * A browser's request from another site (a hostile page posting the login
 * form: login CSRF). portero refuses to start a session for one whatever the
 * route's policy; the app does not rely on that alone.
 */
function isCrossSite(request) {
  const site = request.headers["sec-fetch-site"];
  if (site === "same-origin") return false;
  const origin = request.headers.origin;
  if (origin === undefined) return site === "cross-site" || site === "same-site";
  const proto = request.headers["x-forwarded-proto"] ?? "http";
  return origin !== `${proto}://${request.headers.host}`;
}

app.post("/auth/login", async (request, reply) => {
  if (isCrossSite(request)) {
    return reply.code(403).send({ error: "forbidden", reason: "cross_site_request" });
  }
  const { username, password, client = "web" } = request.body ?? {};
  const user = typeof username === "string" ? USERS[username] : undefined;
  const returnTo = safeReturnPath(request.body?.return_to);
  if (!user || user.password !== password) {
    if (isForm(request)) {
      const query = new URLSearchParams({ error: "invalid_credentials", return_to: returnTo });
      return reply.code(303).header("location", `/login?${query}`).send();
    }
    return reply.code(401).send({ error: "invalid_credentials" });
  }
  if (client !== "web" && client !== "app") {
    return reply.code(400).send({ error: "client must be \"web\" or \"app\"" });
  }
  let created;
  try {
    created = await sidecar("POST", "/v1/sessions", {
      user_id: user.id,
      email: user.email,
      roles: user.roles,
      // Set by portero from Envoy's view of the client, not from the request.
      client_ip: request.headers["x-portero-client-ip"] ?? "",
      user_agent: request.headers["user-agent"] ?? "",
    });
  } catch (error) {
    request.log.error({ error: String(error) }, "sidecar unreachable");
    return reply.code(503).header("retry-after", "1").send({ error: "session_store_unavailable" });
  }
  if (created.status === 403) {
    return reply.code(403).send({ error: "user_banned" });
  }
  if (created.status !== 201) {
    request.log.error({ status: created.status, body: created.json }, "session not created");
    return reply.code(503).header("retry-after", "1").send({ error: "session_store_unavailable" });
  }
  const { session_id, access_token, access_expires_at, expires_at } = created.json;
  if (client === "web") {
    reply.header(config.startHeader, session_id);
    if (isForm(request)) {
      return reply.code(303).header("location", returnTo).send();
    }
    return { user: { id: user.id, email: user.email, roles: user.roles }, expires_at };
  }
  return { access_token, token_type: "Bearer", access_expires_at, expires_at };
});

app.post("/auth/logout", async (request, reply) => {
  const handle = request.headers["x-portero-session"];
  if (!handle) {
    return reply.code(401).send({ error: "no_session" });
  }
  const ended = await sidecar("DELETE", `/v1/sessions/${encodeURIComponent(handle)}`).catch(() => null);
  if (!ended || ended.status !== 200) {
    return reply.code(503).header("retry-after", "1").send({ error: "session_store_unavailable" });
  }
  reply.header(config.endHeader, "1");
  if (isForm(request)) {
    return reply.code(303).header("location", "/login?signed_out=1").send();
  }
  return { ended: ended.json.ended };
});

// Ends every session of the caller (e.g. after a password change).
app.post("/auth/logout-everywhere", async (request, reply) => {
  const userId = request.headers["x-portero-user-id"];
  if (!userId) {
    return reply.code(401).send({ error: "no_session" });
  }
  const revoked = await sidecar("POST", `/v1/users/${encodeURIComponent(userId)}/revoke`).catch(() => null);
  if (!revoked || revoked.status !== 200) {
    return reply.code(503).header("retry-after", "1").send({ error: "session_store_unavailable" });
  }
  reply.header(config.endHeader, "1");
  return revoked.json;
});

// Demo admin route: ban (or unban) a demo user. Roles come from portero.
app.post("/admin/users/:username/ban", async (request, reply) => {
  const roles = (request.headers["x-portero-roles"] ?? "").split(",");
  if (!roles.includes("admin")) {
    return reply.code(403).send({ error: "admin_only" });
  }
  const user = USERS[request.params.username];
  if (!user) {
    return reply.code(404).send({ error: "no_such_user" });
  }
  const banned = request.body?.banned !== false;
  const updated = await sidecar("PUT", `/v1/users/${encodeURIComponent(user.id)}`, {
    status: banned ? "banned" : "active",
  }).catch(() => null);
  if (!updated || updated.status !== 200) {
    return reply.code(503).header("retry-after", "1").send({ error: "session_store_unavailable" });
  }
  return updated.json;
});

// Echoes what the upstream received, so people and tests can see it.
app.get("/me", async (request) => {
  const h = request.headers;
  return {
    user_id: h["x-portero-user-id"] ?? null,
    session: h["x-portero-session"] ?? null,
    email: h["x-portero-email"] ?? null,
    roles: h["x-portero-roles"] ? h["x-portero-roles"].split(",") : [],
    client_ip: h["x-portero-client-ip"] ?? null,
    authorization: h.authorization ?? null,
    cookie: h.cookie ?? null,
  };
});

// An `optional` route in portero's config: anonymous visitors get in too,
// and signed-in ones are named.
app.get("/feed", async (request) => ({
  user: request.headers["x-portero-user-id"] ?? null,
  binding_mismatch: request.headers["x-portero-binding-mismatch"] ?? null,
}));

// Behind the `admin` Envoy route, which portero gates on the `admin` role.
app.get("/admin/overview", async (request) => ({
  user: request.headers["x-portero-user-id"],
  roles: request.headers["x-portero-roles"],
}));

app.get("/public/hello", async (request) => ({
  hello: "world",
  user_id: request.headers["x-portero-user-id"] ?? null,
}));

const shutdown = async () => {
  await app.close();
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

await app.listen({ host: config.host, port: config.port });
