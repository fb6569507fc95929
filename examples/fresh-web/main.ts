// The Fresh-role web front end behind portero: `deno task start`.
//   HOST, PORT   where to listen (127.0.0.1:8000)
//   API_URL      the edge's address for server-side API calls
import { createApp } from "./lib/fresh.ts";

const hostname = Deno.env.get("HOST") ?? "127.0.0.1";
const port = Number(Deno.env.get("PORT") ?? "8000");
const apiUrl = Deno.env.get("API_URL") ?? "http://127.0.0.1:8080";

const app = await createApp(new URL(".", import.meta.url), { apiUrl });
Deno.serve({
  hostname,
  port,
  onListen: ({ hostname, port }) =>
    console.log(`fresh-web listening on http://${hostname}:${port}`),
}, app);
