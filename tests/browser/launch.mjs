// Debian's Chromium as both browser scripts start it.
import { createHash, X509Certificate } from "node:crypto";
import { chromium } from "playwright-core";

/**
 * Launches `executablePath`, trusting exactly the certificate `certPem`
 * (no CA install, no --ignore-certificate-errors: the base64 SHA-256 of its
 * public key), with `extraArgs` after the common ones.
 */
export function launchTrusting(executablePath, certPem, extraArgs = []) {
  const spki = createHash("sha256")
    .update(new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" }))
    .digest("base64");
  return chromium.launch({
    executablePath,
    args: [
      `--ignore-certificate-errors-spki-list=${spki}`,
      // This machine's network is closed: no background fetches to Google.
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--disable-gpu",
      "--no-first-run",
      ...extraArgs,
    ],
  });
}
