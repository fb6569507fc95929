// A real OpenID Connect provider for portero's integration tests: panva's
// oidc-provider (OpenID Certified), served over HTTPS on loopback.
//
//   node tests/oidc-provider/provider.mjs <config.json>
//
// Prints exactly one line, `ready <issuer>`, on stdout once listening; logs
// one line per request (and provider errors) on stderr. See README.md.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

// stdout carries only the `ready` line: oidc-provider prints its notices with
// console.info, so send everything but that line to stderr.
console.log = console.info = console.error;

const { default: Provider } = await import('oidc-provider');

function fail(message) {
  process.stderr.write(`oidc-provider: ${message}\n`);
  process.exit(2);
}

// ---- configuration -----------------------------------------------------------

function loadConfig(path) {
  if (!path) fail('usage: node provider.mjs <config.json>');
  let config;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`cannot read config ${path}: ${err.message}`);
  }
  const bad = (what) => fail(`bad config ${path}: ${what}`);
  const isStr = (v) => typeof v === 'string' && v.length > 0;
  const isStrs = (v) => Array.isArray(v) && v.every(isStr);

  if (!Number.isInteger(config.port) || config.port < 1 || config.port > 65535) bad('"port" must be a TCP port');
  let issuer;
  try {
    issuer = new URL(config.issuer);
  } catch {
    bad('"issuer" must be a URL');
  }
  if (issuer.protocol !== 'https:' || issuer.search || issuer.hash) bad('"issuer" must be an https URL without query or fragment');
  for (const f of ['cert', 'key']) {
    if (!isStr(config[f])) bad(`"${f}" must be a file path`);
    try {
      config[f] = readFileSync(config[f]);
    } catch (err) {
      bad(`"${f}": ${err.message}`);
    }
  }
  if (!Array.isArray(config.clients) || config.clients.length === 0) bad('"clients" must be a non-empty array');
  config.clients.forEach((c, i) => {
    if (!isStr(c.client_id) || !isStr(c.client_secret)) bad(`clients[${i}] needs client_id and client_secret`);
    if (!isStrs(c.redirect_uris) || c.redirect_uris.length === 0) bad(`clients[${i}].redirect_uris must be a non-empty array of strings`);
    if (c.post_logout_redirect_uris !== undefined && !isStrs(c.post_logout_redirect_uris)) bad(`clients[${i}].post_logout_redirect_uris must be an array of strings`);
    if (c.backchannel_logout_uri !== undefined && !isStr(c.backchannel_logout_uri)) bad(`clients[${i}].backchannel_logout_uri must be a string`);
  });
  if (!Array.isArray(config.users) || config.users.length === 0) bad('"users" must be a non-empty array');
  config.users.forEach((u, i) => {
    if (!isStr(u.sub) || !isStr(u.username) || !isStr(u.password)) bad(`users[${i}] needs sub, username and password`);
    if (u.groups !== undefined && !isStrs(u.groups)) bad(`users[${i}].groups must be an array of strings`);
  });
  return config;
}

const config = loadConfig(process.argv[2]);
const usersBySub = new Map(config.users.map((u) => [u.sub, u]));
const usersByName = new Map(config.users.map((u) => [u.username, u]));

// ---- provider --------------------------------------------------------------

// Signing key for ID tokens (and logout tokens), fresh at every start.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };

// Grant every requested OIDC scope and claim. The clients are all first-party
// (the sites behind portero), so there is no consent screen: a user signed in
// for client A who starts an authorization for client B comes straight back to
// B with a code, no page shown.
async function autoGrant(ctx) {
  const { oidc } = ctx;
  const accountId = oidc.account?.accountId ?? oidc.session.accountId;
  const clientId = oidc.client.clientId;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
    grant = new oidc.provider.Grant({ accountId, clientId });
  }
  const scopes = [...oidc.requestParamOIDCScopes];
  const claims = [...oidc.requestParamClaims];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  if (claims.length) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    // One method per client is what oidc-provider enforces; basic unless the
    // config asks for client_secret_post.
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    // backchannel_logout_uri is plain http://127.0.0.1 in the tests. That
    // needs no special option: oidc-provider validates this metadata as a
    // "web" URI (http or https); only a few other URIs are https-only.
    // session_required puts `sid` in the logout token.
    ...(c.backchannel_logout_uri
      ? { backchannel_logout_uri: c.backchannel_logout_uri, backchannel_logout_session_required: true }
      : {}),
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },

  responseTypes: ['code'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  pkce: { methods: ['S256'], required: () => true },
  enabledJWA: { idTokenSigningAlgValues: ['RS256'] },

  scopes: ['openid', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put the scope-requested claims in the ID token too, not only userinfo.
  conformIdTokenClaims: false,

  async findAccount(ctx, sub) {
    const user = usersBySub.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      // oidc-provider keeps only the claims the granted scopes allow.
      async claims() {
        return {
          sub,
          email: user.email,
          email_verified: user.email !== undefined ? true : undefined,
          name: user.name,
          preferred_username: user.username,
          groups: user.groups ?? [],
        };
      },
    };
  },

  loadExistingGrant: autoGrant,
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },

  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    backchannelLogout: { enabled: true },
  },

  ttl: {
    AuthorizationCode: 60,
    IdToken: 3600,
    AccessToken: 3600,
    Interaction: 600,
    Session: 86400,
    Grant: 86400,
  },
  renderError,
});

for (const event of ['server_error', 'backchannel.error', 'end_session.error', 'grant.error', 'authorization.error']) {
  provider.on(event, (...args) => {
    const err = args.find((a) => a instanceof Error);
    const client = args.find((a) => a?.clientId)?.clientId;
    process.stderr.write(`oidc-provider: ${event}${client ? ` (${client})` : ''}: ${err?.message ?? ''}${err?.error_description ? ` (${err.error_description})` : ''}\n`);
  });
}
// oidc-provider validates static client metadata lazily: load each client now
// so that bad metadata fails the start, not the first request.
for (const { client_id: id } of config.clients) {
  try {
    await provider.Client.find(id);
  } catch (err) {
    fail(`bad config ${process.argv[2]}: client ${id}: ${err.error_description ?? err.message}`);
  }
}

provider.on('backchannel.success', (ctx, client, accountId, sid) => {
  process.stderr.write(`oidc-provider: backchannel logout sent to ${client.clientId} (sid ${sid})\n`);
});

// ---- pages -------------------------------------------------------------------

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 24rem; margin: 3rem auto; padding: 0 1rem; }
  label { display: block; margin-top: 1rem; font-weight: 600; }
  input { display: block; width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }
  button { margin-top: 1.5rem; padding: .5rem 1.5rem; font: inherit; }
  [role=alert] { color: #a00; border: 1px solid #a00; padding: .5rem; }
</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>`;
}

function loginPage(uid, clientId, { username = '', error } = {}) {
  return page('Sign in', `<h1>Sign in</h1>
<p>to continue to ${esc(clientId)}</p>
${error ? `<p role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" required value="${esc(username)}"${username ? '' : ' autofocus'}>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required${username ? ' autofocus' : ''}>
  <button type="submit">Sign in</button>
</form>`);
}

// RP-initiated logout asks the user to confirm; `form` is oidc-provider's own
// (id="op.logoutForm", carrying its xsrf token), submitted with logout=yes.
async function logoutSource(ctx, form) {
  ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Do you want to sign out from ${esc(ctx.host)}?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Sign out</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('Signed out', '<h1>Signed out</h1>\n<p>You have been signed out.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', `<h1>Error</h1>
<p role="alert">${esc(out.error)}${out.error_description ? `: ${esc(out.error_description)}` : ''}</p>`);
}

// ---- interactions (login; consent only if a client forces prompt=consent) ----

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // No form-action: Chromium applies it to the redirects after the POST too,
    // and those end at the client's redirect_uri, another origin.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(html);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Error', '<p role="alert">Unknown sign-in request.</p>'));
  const clientId = details.params.client_id;

  if (details.prompt.name === 'login') {
    if (req.method === 'GET' && !action) return send(res, 200, loginPage(uid, clientId));
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const username = form.get('username') ?? '';
      const user = usersByName.get(username);
      if (!user || user.password !== form.get('password')) {
        return send(res, 401, loginPage(uid, clientId, { username, error: 'Wrong username or password.' }));
      }
      return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
    }
  }

  if (details.prompt.name === 'consent' && req.method === 'GET' && !action) {
    // Same automatic grant as loadExistingGrant, for a client that forces
    // prompt=consent: first-party clients get no consent screen.
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId });
    const { missingOIDCScope, missingOIDCClaims } = details.prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  return send(res, 404, page('Not found', '<p role="alert">Not found.</p>'));
}

// ---- server --------------------------------------------------------------------

const oidc = provider.callback();
let server;
try {
  server = createServer({ cert: config.cert, key: config.key }, handle);
} catch (err) {
  fail(`bad config ${process.argv[2]}: cert/key: ${err.message}`);
}

function handle(req, res) {
  const path = new URL(req.url, 'https://x').pathname;
  // Path only: queries carry codes, tokens and states.
  res.on('finish', () => process.stderr.write(`${req.method} ${path} ${res.statusCode}\n`));
  const m = path.match(/^\/interaction\/([\w-]+)(?:\/(login))?$/);
  if (!m) return oidc(req, res);
  interaction(req, res, m[1], m[2]).catch((err) => {
    process.stderr.write(`oidc-provider: interaction error: ${err.message}\n`);
    if (!res.headersSent) send(res, 400, page('Error', `<p role="alert">${esc(err.message)}</p>`));
    else res.end();
  });
}

server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${config.port}: ${err.message}`));
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});

process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
});
