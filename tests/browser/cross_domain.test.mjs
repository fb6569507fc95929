// Single sign-on across unrelated domains, in Debian's Chromium: two apps,
// app-one.test and app-two.test, behind the same edge, each with its own
// host-only `__Host-` cookie and its own OIDC client at a real provider
// (oidc-provider, on localhost). Signing in on one makes the other sign in
// through the provider's session, with no page shown; every name maps to
// loopback (--host-resolver-rules), over HTTPS.
//
// Environment (set by tests/tests/browser_cross_domain.rs):
//   EDGE_PORT     the edge's HTTPS port
//   EDGE_CERT     its certificate (PEM; Chromium trusts its key; the
//                 provider serves the same one)
//   PROVIDER      the provider's issuer URL
//   ARTIFACTS     where the screenshots go
//   CHROMIUM      the browser binary
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { launchTrusting } from "./launch.mjs";

const PORT = process.env.EDGE_PORT;
const ONE = `https://app-one.test:${PORT}`;
const TWO = `https://app-two.test:${PORT}`;
const PROVIDER = new URL(process.env.PROVIDER);
const COOKIE = "__Host-portero";
const ARTIFACTS = process.env.ARTIFACTS;
mkdirSync(ARTIFACTS, { recursive: true });

let browser;

before(async () => {
  browser = await launchTrusting(process.env.CHROMIUM, readFileSync(process.env.EDGE_CERT), [
    "--host-resolver-rules=MAP app-one.test 127.0.0.1, MAP app-two.test 127.0.0.1",
  ]);
});

after(async () => {
  await browser?.close();
});

/** Every document the page showed (main frame), in order. */
function recordDocuments(page) {
  const shown = [];
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) shown.push(frame.url());
  });
  return shown;
}

/** What the API's /me echoes, as the page shows it. */
async function me(page) {
  return JSON.parse(await page.innerText("body"));
}

test("signed in on app-one.test, app-two.test signs in through the provider without a prompt; signing out on one signs out both", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const shown = recordDocuments(page);

  // app-one: no session → the provider's sign-in page.
  await page.goto(`${ONE}/me`);
  assert.equal(new URL(page.url()).host, PROVIDER.host, `at ${page.url()}`);
  await page.screenshot({ path: `${ARTIFACTS}/cross-domain-01-provider-sign-in.png`, fullPage: true });
  await page.getByLabel("Username").fill("grace");
  await page.getByLabel("Password").fill("hopper");
  await Promise.all([page.waitForURL(`${ONE}/me`), page.getByRole("button").click()]);
  const one = await me(page);
  assert.equal(one.user_id, "oidc:sub-grace");
  assert.deepEqual(one.roles, ["admin", "staff"]);
  await page.screenshot({ path: `${ARTIFACTS}/cross-domain-02-app-one-signed-in.png`, fullPage: true });

  // app-one's cookie: host-only, its own, out of JavaScript's reach.
  const oneCookies = (await context.cookies(ONE)).filter((c) => c.name === COOKIE);
  assert.equal(oneCookies.length, 1);
  assert.equal(oneCookies[0].domain, "app-one.test");
  assert.ok(oneCookies[0].secure && oneCookies[0].httpOnly);
  assert.equal(await page.evaluate(() => document.cookie.includes("__Host-portero=")), false);

  // app-two has no cookie of app-one's: a session of its own is made,
  // through the provider, which already knows the user: no page shown.
  assert.equal((await context.cookies(TWO)).filter((c) => c.name === COOKIE).length, 0);
  const before = shown.length;
  // The callback answers with a page that moves on from app-two itself.
  await page.goto(`${TWO}/me`);
  await page.waitForURL(`${TWO}/me`);
  const two = await me(page);
  assert.equal(two.user_id, "oidc:sub-grace");
  assert.notEqual(two.session, one.session, "each app has its own portero session");
  const between = shown.slice(before);
  assert.deepEqual(
    between.filter((url) => !url.startsWith(TWO)),
    [],
    `no other document was shown on the way: ${between.join(" → ")}`,
  );
  await page.screenshot({ path: `${ARTIFACTS}/cross-domain-03-app-two-signed-in.png`, fullPage: true });
  const twoCookies = (await context.cookies(TWO)).filter((c) => c.name === COOKIE);
  assert.equal(twoCookies.length, 1);
  assert.equal(twoCookies[0].domain, "app-two.test");
  assert.notEqual(twoCookies[0].value, oneCookies[0].value);

  // Sign out on app-two (a form on its own page, as its sign-out button
  // would post): the provider asks to confirm, then tells every app.
  await page.evaluate(() => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/.portero/oidc/logout";
    document.body.append(form);
    form.submit();
  });
  await page.waitForURL((url) => url.host === PROVIDER.host);
  await page.screenshot({ path: `${ARTIFACTS}/cross-domain-04-provider-sign-out.png`, fullPage: true });
  // Back on app-two's home page (post_logout_redirect_uri), which needs a
  // session: to the provider, which now asks for the password.
  await Promise.all([
    page.waitForURL((url) => url.host === PROVIDER.host && url.pathname.startsWith("/interaction/")),
    page.getByRole("button", { name: "Sign out" }).click(),
  ]);
  await page.getByLabel("Password").waitFor();
  const signedOutAt = Date.now();
  assert.equal((await context.cookies(TWO)).filter((c) => c.name === COOKIE).length, 0);
  // app-one still holds its cookie, but its session was ended by the
  // provider's back-channel call: within the revocation feed's bound (1 s)
  // it is sent to sign in again, and the provider asks for the password.
  assert.equal((await context.cookies(ONE)).filter((c) => c.name === COOKIE).length, 1);
  const deadline = signedOutAt + 1000;
  for (;;) {
    await page.goto(`${ONE}/me`);
    if (new URL(page.url()).host === PROVIDER.host) break;
    assert.ok(Date.now() < deadline, `app-one still signed in: ${await page.innerText("body")}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await page.getByLabel("Password").waitFor();
  await page.screenshot({ path: `${ARTIFACTS}/cross-domain-05-app-one-signed-out.png`, fullPage: true });
  // Back shows nothing private on either app: each step back asks the
  // edge again (answers to a signed-in user are `no-store`).
  for (let i = 0; i < 6 && page.url() !== "about:blank"; i++) {
    if (!(await page.goBack())) break;
    const text = await page.innerText("body").catch(() => "");
    assert.ok(!text.includes("oidc:sub-grace"), `Back showed a private page: ${page.url()}`);
  }

  // A browser that never signed in gets the provider's page on app-two.
  const stranger = await (await browser.newContext()).newPage();
  await stranger.goto(`${TWO}/me`);
  assert.equal(new URL(stranger.url()).host, PROVIDER.host);
  await context.close();
});

test("the web app's login page offers the organisation's sign-in beside its own form", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${ONE}/login?return_to=/`);
  await page.getByRole("link", { name: "Sign in with your organisation" }).click();
  await page.waitForURL((url) => url.host === PROVIDER.host);
  await page.getByLabel("Username").fill("alan");
  await page.getByLabel("Password").fill("turing");
  await Promise.all([page.waitForURL(`${ONE}/`), page.getByRole("button").click()]);
  assert.equal(await page.textContent("#user-id"), "oidc:sub-alan");
  await page.screenshot({ path: `${ARTIFACTS}/cross-domain-06-web-app-signed-in.png`, fullPage: true });
  await context.close();
});
