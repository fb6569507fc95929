// One sign-in shared by sibling sub-domains, in Debian's Chromium: the
// cookie mode of docs/examples/subdomains.json (a cookie without `__Host-`,
// `Domain` set, `SameSite=Lax`). Both hosts map to the edge on loopback
// (--host-resolver-rules), over HTTPS.
//
// Environment (set by tests/tests/browser_subdomains.rs):
//   EDGE_PORT     the edge's HTTPS port
//   EDGE_CERT     its certificate (PEM; Chromium trusts its key)
//   ARTIFACTS     where the screenshots go
//   CHROMIUM      the browser binary
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { launchTrusting } from "./launch.mjs";

const PORT = process.env.EDGE_PORT;
const A = `https://a.example.test:${PORT}`;
const B = `https://b.example.test:${PORT}`;
const COOKIE = "portero";
const ARTIFACTS = process.env.ARTIFACTS;
mkdirSync(ARTIFACTS, { recursive: true });

let browser;

before(async () => {
  browser = await launchTrusting(process.env.CHROMIUM, readFileSync(process.env.EDGE_CERT), [
    "--host-resolver-rules=MAP *.example.test 127.0.0.1",
  ]);
});

after(async () => {
  await browser?.close();
});

test("signed in on a.example.test, the user is signed in on b.example.test; logging out on b ends both", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${A}/login`);
  await page.fill("input[name=username]", "ada");
  await page.fill("input[name=password]", "lovelace");
  await Promise.all([page.waitForNavigation(), page.click("#login-submit")]);
  assert.equal(await page.textContent("#user-id"), "user-ada");

  // One cookie, for the parent domain, Lax, out of JavaScript's reach.
  const cookies = (await context.cookies(A)).filter((c) => c.name === COOKIE);
  assert.equal(cookies.length, 1);
  const [cookie] = cookies;
  assert.equal(cookie.domain, ".example.test");
  assert.equal(cookie.sameSite, "Lax");
  assert.ok(cookie.secure && cookie.httpOnly);

  // The sister host: no login prompt, the same user.
  const other = await context.newPage();
  const reply = await other.goto(`${B}/`);
  assert.equal(reply.status(), 200);
  assert.equal(new URL(other.url()).host, `b.example.test:${PORT}`);
  assert.equal(await other.textContent("#user-id"), "user-ada");
  await other.screenshot({ path: `${ARTIFACTS}/subdomains-01-b-signed-in.png`, fullPage: true });

  // Log out on b (its own form): a is signed out too.
  await Promise.all([other.waitForNavigation(), other.click("#logout")]);
  assert.equal((await context.cookies(A)).filter((c) => c.name === COOKIE).length, 0);
  await page.goto(`${A}/account`);
  assert.equal(new URL(page.url()).pathname, "/login");
  assert.equal(new URL(page.url()).host, `a.example.test:${PORT}`);
  await page.screenshot({ path: `${ARTIFACTS}/subdomains-02-a-signed-out.png`, fullPage: true });
  await context.close();
});

test("a host outside the parent domain gets no cookie", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${A}/login`);
  await page.fill("input[name=username]", "alan");
  await page.fill("input[name=password]", "turing");
  await Promise.all([page.waitForNavigation(), page.click("#login-submit")]);
  assert.equal(await page.textContent("#user-id"), "user-alan");
  // localhost is another site: the browser sends it nothing, so the edge
  // sends it to sign in.
  const elsewhere = await context.newPage();
  await elsewhere.goto(`https://localhost:${PORT}/account`);
  assert.equal(new URL(elsewhere.url()).pathname, "/login");
  assert.equal((await context.cookies(`https://localhost:${PORT}`)).length, 0);
  await context.close();
});
