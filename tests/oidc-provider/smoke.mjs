// End-to-end check of a running provider.mjs, speaking the protocol as a
// relying party would (no browser):
//
//   NODE_EXTRA_CA_CERTS=<ca.pem> node tests/oidc-provider/smoke.mjs <config.json>
//
// Uses the provider's own config (first user, first two clients). Requests
// go out with node:https, not fetch, so that the issuer's host name (e.g.
// id.example.test, absent from /etc/hosts) can be pointed at 127.0.0.1 with a
// `lookup` override while TLS still checks the certificate for that name.
// The CA comes from NODE_EXTRA_CA_CERTS. Starts nothing but a small http
// server on the clients' backchannel_logout_uri port(s); prints `smoke ok`.

import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8'));
const issuer = new URL(config.issuer);
const [user] = config.users;
const [clientA, clientB] = config.clients;
if (!clientB) throw new Error('smoke needs two clients in the config');

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const random = () => b64url(randomBytes(32)); // 43 chars: also a valid PKCE verifier
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`  ok: ${what}`);
}

// ---- HTTP client with a cookie jar ---------------------------------------------

// The issuer's host always resolves to loopback, where the provider listens.
function lookup(host, opts, cb) {
  if (host !== issuer.hostname) return dnsLookup(host, opts, cb);
  return opts?.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4);
}

const jar = new Map(); // `${name};${path}` -> { name, value, path }

function storeCookies(setCookie = []) {
  for (const line of setCookie) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const name = pair.slice(0, pair.indexOf('='));
    const value = pair.slice(pair.indexOf('=') + 1);
    let path = '/';
    let expired = value === '';
    for (const a of attrs) {
      const [k, v = ''] = a.split('=');
      if (/^path$/i.test(k)) path = v;
      if (/^max-age$/i.test(k) && Number(v) <= 0) expired = true;
      if (/^expires$/i.test(k) && Date.parse(v) <= Date.now()) expired = true;
    }
    if (expired) jar.delete(`${name};${path}`);
    else jar.set(`${name};${path}`, { name, value, path });
  }
}

function cookieHeader(path) {
  return [...jar.values()]
    .filter((c) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
    .map((c) => `${c.name}=${c.value}`).join('; ');
}

function req(method, url, { headers = {}, form } = {}) {
  const u = new URL(url);
  if (u.origin !== issuer.origin) throw new Error(`refusing to request ${u.origin}: not the issuer`);
  const body = form ? new URLSearchParams(form).toString() : undefined;
  const cookie = cookieHeader(u.pathname);
  return new Promise((resolve, reject) => {
    const r = httpsRequest(u, {
      method,
      lookup,
      headers: {
        ...headers,
        ...(cookie ? { cookie } : {}),
        ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        storeCookies(res.headers['set-cookie']);
        resolve({ status: res.statusCode, headers: res.headers, text });
      });
    });
    r.on('error', reject);
    r.end(body);
  });
}

// Follows redirects within the provider; stops at a page (2xx/4xx) or at a
// redirect leaving the issuer (the client's redirect_uri). Counts pages seen.
async function follow(method, url, opts) {
  let res = await req(method, url, opts);
  let current = url;
  while (res.status >= 300 && res.status < 400) {
    const next = new URL(res.headers.location, current);
    if (next.origin !== issuer.origin) return { redirect: next };
    current = next.href;
    res = await req('GET', current);
  }
  return { page: res, url: current };
}

// ---- OIDC helpers ------------------------------------------------------------------

const discovery = JSON.parse((await req('GET', new URL('.well-known/openid-configuration', `${issuer.href.replace(/\/?$/, '/')}`).href)).text);
const jwks = JSON.parse((await req('GET', discovery.jwks_uri)).text);

function verifyJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (header.alg !== 'RS256' || !jwk) throw new Error(`unexpected JWT header ${JSON.stringify(header)}`);
  if (!verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url'))) {
    throw new Error('bad JWT signature');
  }
  return JSON.parse(Buffer.from(p, 'base64url'));
}

function authorizationUrl(client, extra = {}) {
  const verifier = random();
  const params = {
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0],
    response_type: 'code',
    scope: 'openid email profile groups',
    state: random(),
    nonce: random(),
    code_challenge: b64url(createHash('sha256').update(verifier).digest()),
    code_challenge_method: 'S256',
    ...extra,
  };
  for (const [k, v] of Object.entries(params)) if (v === undefined) delete params[k];
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams(params);
  return { url: url.href, verifier, params };
}

function callbackParams(redirect, client, params) {
  check(redirect.href.startsWith(`${client.redirect_uris[0]}?`), `${client.client_id}: back at its redirect_uri`);
  const q = redirect.searchParams;
  check(!q.has('error'), `${client.client_id}: no error${q.has('error') ? ` (${q.get('error')}: ${q.get('error_description')})` : ''}`);
  check(q.get('state') === params.state, `${client.client_id}: state round-trips`);
  check(q.get('iss') === config.issuer, `${client.client_id}: iss in the authorization response`);
  check(q.has('code'), `${client.client_id}: has a code`);
  return q.get('code');
}

// client_secret_basic: id and secret form-encoded, then base64 (RFC 6749 2.3.1).
function tokenRequest(client, code, verifier) {
  const basic = Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64');
  return req('POST', discovery.token_endpoint, {
    headers: { authorization: `Basic ${basic}` },
    form: { grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier },
  });
}

async function exchange(client, code, verifier) {
  const res = await tokenRequest(client, code, verifier);
  check(res.status === 200, `${client.client_id}: token endpoint 200${res.status === 200 ? '' : ` (got ${res.status} ${res.text})`}`);
  const tokens = JSON.parse(res.text);
  check(tokens.token_type === 'Bearer' && tokens.id_token, `${client.client_id}: access token and ID token`);
  return tokens;
}

function checkIdToken(claims, client, params) {
  console.log(`  ${client.client_id} ID token: ${JSON.stringify(claims)}`);
  check(claims.iss === config.issuer, 'id_token iss');
  check(claims.aud === client.client_id, 'id_token aud');
  check(claims.sub === user.sub, 'id_token sub');
  check(claims.nonce === params.nonce, 'id_token nonce');
  check(claims.email === user.email && claims.email_verified === true, 'id_token email, email_verified');
  check(claims.name === user.name, 'id_token name');
  check(JSON.stringify(claims.groups) === JSON.stringify(user.groups ?? []), 'id_token groups');
  check(typeof claims.sid === 'string', 'id_token sid');
  check(claims.exp - claims.iat === 3600, 'id_token lives 3600 s');
}

// ---- back-channel logout receiver --------------------------------------------------

const logoutTokens = [];
const servers = [];
for (const origin of new Set(config.clients.filter((c) => c.backchannel_logout_uri).map((c) => new URL(c.backchannel_logout_uri).origin))) {
  const u = new URL(origin);
  const server = createServer((rq, rs) => {
    let body = '';
    rq.on('data', (d) => { body += d; });
    rq.on('end', () => {
      logoutTokens.push({ path: rq.url, method: rq.method, type: rq.headers['content-type'], token: new URLSearchParams(body).get('logout_token') });
      rs.writeHead(200).end();
    });
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(Number(u.port), u.hostname.replace(/^\[|\]$/g, ''), resolve));
  servers.push(server);
}

// ---- the run ---------------------------------------------------------------------------

try {
  console.log('discovery');
  check(discovery.issuer === config.issuer, 'issuer');
  check(JSON.stringify(discovery.response_types_supported) === '["code"]', 'response_types_supported is [code]');
  check(JSON.stringify(discovery.code_challenge_methods_supported) === '["S256"]', 'code_challenge_methods_supported is [S256]');
  check(typeof discovery.end_session_endpoint === 'string', 'end_session_endpoint');
  check(discovery.backchannel_logout_supported === true, 'backchannel_logout_supported');
  for (const s of ['openid', 'email', 'profile', 'groups']) check(discovery.scopes_supported.includes(s), `scope ${s} supported`);

  console.log('PKCE is required, S256 only');
  for (const [what, extra] of [['no PKCE', { code_challenge: undefined, code_challenge_method: undefined }], ['plain PKCE', { code_challenge_method: 'plain' }]]) {
    const { url } = authorizationUrl(clientA, extra);
    const { redirect } = await follow('GET', url);
    check(redirect?.searchParams.get('error') === 'invalid_request', `${what} is refused (${redirect?.searchParams.get('error_description')})`);
  }

  console.log(`code flow for ${clientA.client_id}, signing in as ${user.username}`);
  const a = authorizationUrl(clientA);
  let step = await follow('GET', a.url);
  check(step.page?.status === 200 && /\/interaction\/[\w-]+$/.test(new URL(step.url).pathname), 'login page shown');
  check(/<label for="username">/.test(step.page.text) && /<label for="password">/.test(step.page.text), 'login form has labels');
  const loginAction = new URL(step.page.text.match(/<form method="post" action="([^"]+)"/)[1], step.url).href;
  const wrong = await req('POST', loginAction, { form: { username: user.username, password: `${user.password}-wrong` } });
  check(wrong.status === 401 && /role="alert"/.test(wrong.text), 'wrong password: the form again, with an alert');
  step = await follow('POST', loginAction, { form: { username: user.username, password: user.password } });
  const codeA = callbackParams(step.redirect, clientA, a.params);
  const tokensA = await exchange(clientA, codeA, a.verifier);
  const idA = verifyJwt(tokensA.id_token);
  checkIdToken(idA, clientA, a.params);
  const replay = await tokenRequest(clientA, codeA, a.verifier);
  check(replay.status === 400 && JSON.parse(replay.text).error === 'invalid_grant', 'the code cannot be redeemed twice');

  console.log(`code flow for ${clientB.client_id} in the same browser: no page`);
  const b = authorizationUrl(clientB);
  step = await follow('GET', b.url);
  check(step.redirect !== undefined, `no page shown${step.page ? ` (got ${step.url} ${step.page.status})` : ''}`);
  const codeB = callbackParams(step.redirect, clientB, b.params);
  const idB = verifyJwt((await exchange(clientB, codeB, b.verifier)).id_token);
  checkIdToken(idB, clientB, b.params);

  console.log('RP-initiated logout from', clientA.client_id);
  const endUrl = new URL(discovery.end_session_endpoint);
  const logoutState = random();
  endUrl.search = new URLSearchParams({
    id_token_hint: tokensA.id_token,
    post_logout_redirect_uri: clientA.post_logout_redirect_uris[0],
    state: logoutState,
  });
  step = await follow('GET', endUrl.href);
  check(step.page?.status === 200 && /id="op.logoutForm"/.test(step.page.text), 'confirmation page with the logout form');
  check(/<button type="submit" form="op.logoutForm" name="logout" value="yes"[^>]*>Sign out<\/button>/.test(step.page.text), 'a Sign out button');
  const confirmAction = new URL(step.page.text.match(/<form id="op.logoutForm" method="post" action="([^"]+)"/)[1], step.url).href;
  const xsrf = step.page.text.match(/name="xsrf" value="([^"]+)"/)[1];
  step = await follow('POST', confirmAction, { form: { xsrf, logout: 'yes' } });
  check(step.redirect?.href === `${clientA.post_logout_redirect_uris[0]}?state=${logoutState}`, `redirected to post_logout_redirect_uri with state (${step.redirect?.href})`);

  const expected = [clientA, clientB].filter((c) => c.backchannel_logout_uri);
  check(logoutTokens.length === expected.length, `${expected.length} back-channel logout POSTs arrived`);
  for (const t of logoutTokens) {
    const claims = verifyJwt(t.token);
    console.log(`  logout_token ${t.method} ${t.path}: ${JSON.stringify({ iss: claims.iss, aud: claims.aud, sub: claims.sub, sid: claims.sid, events: claims.events })}`);
    const client = expected.find((c) => c.client_id === claims.aud);
    check(t.method === 'POST' && t.type?.startsWith('application/x-www-form-urlencoded'), 'form POST');
    check(client && new URL(client.backchannel_logout_uri).pathname === t.path, `to ${claims.aud}'s backchannel_logout_uri`);
    check(claims.iss === config.issuer && claims.sub === user.sub, 'logout_token iss, sub');
    check(claims.sid === (claims.aud === clientA.client_id ? idA.sid : idB.sid), 'logout_token sid is the ID token\'s');
    check('http://schemas.openid.net/event/backchannel-logout' in (claims.events ?? {}) && claims.nonce === undefined, 'logout_token events, no nonce');
  }

  console.log('after logout the provider asks to sign in again');
  step = await follow('GET', authorizationUrl(clientB).url);
  check(step.page?.status === 200 && /\/interaction\//.test(step.url), 'login page shown');

  console.log('smoke ok');
} catch (err) {
  console.error(`smoke FAILED: ${err.stack}`);
  process.exitCode = 1;
} finally {
  for (const s of servers) s.close();
}
