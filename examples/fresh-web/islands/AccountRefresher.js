// An island: rendered on the server, hydrated in the browser (the same
// module runs in both). Plain ES modules with `h`, because there is no
// bundler here to compile TSX for the browser (Fresh uses esbuild).
import { h } from "preact";
import { useState } from "preact/hooks";

export default function AccountRefresher({ email }) {
  const [status, setStatus] = useState(`Loaded on the server for ${email}.`);
  const [loads, setLoads] = useState(0);
  async function reload() {
    const response = await fetch("/account/data", { headers: { accept: "application/json" } });
    if (!response.ok) {
      setStatus(`The API answered ${response.status}.`);
      return;
    }
    const account = await response.json();
    setLoads(loads + 1);
    setStatus(`Asked again from the browser (${loads + 1}): ${account.email}.`);
  }
  return h(
    "p",
    null,
    h("button", { id: "reload-account", type: "button", onClick: reload }, "Ask the API again"),
    " ",
    h("span", { id: "reload-status" }, status),
  );
}
