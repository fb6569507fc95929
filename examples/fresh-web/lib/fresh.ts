// The part of Fresh this app uses, in one file: file-based routes under
// routes/ (a module exports `handler` and/or a default page component),
// routes/_app.tsx as the layout, routes/_middleware.ts run before every
// route, and islands — components in islands/ that are rendered on the
// server and hydrated in the browser. Fresh itself is published on JSR only,
// which these machines cannot reach (see README.md). Only exact paths are
// routed; Fresh's `[param]` segments are not needed here.
import { type ComponentChildren, type ComponentType, h, type VNode } from "preact";
import { renderToString } from "preact-render-to-string";

/** Who the edge says is signed in: portero's identity headers. */
export interface Identity {
  id: string;
  email: string;
  roles: string[];
  session: string;
}

export interface State {
  user: Identity | null;
  /** The access JWT portero forwarded (`Authorization: Bearer …`). */
  authorization: string | null;
  /** Per-response nonce of the inline scripts and styles (CSP). */
  nonce: string;
}

export interface PageProps<T = unknown> {
  url: URL;
  data: T;
  state: State;
}

export interface Context<T = unknown> {
  url: URL;
  state: State;
  config: AppConfig;
  render(data?: T, init?: ResponseInit): Response;
  next(): Promise<Response>;
}

export type Handler<T = unknown> = (
  req: Request,
  ctx: Context<T>,
) => Response | Promise<Response>;
export type Handlers<T = unknown> = Partial<Record<string, Handler<T>>>;

export interface AppConfig {
  /** Base URL of the API behind the edge, for server-side calls. */
  apiUrl: string;
}

interface RouteModule {
  handler?: Handlers<unknown> | Handler<unknown>;
  default?: ComponentType<PageProps<unknown>>;
}

interface MiddlewareModule {
  handler: Handler<unknown>;
}

type AppComponent = ComponentType<{ state: State; children: ComponentChildren }>;

const islandRegistry = new Map<string, ComponentType<Record<string, unknown>>>();

/**
 * An island in a page: rendered here, hydrated in the browser by
 * /_frsh/js/boot.js with the same props (which must be JSON).
 */
export function Island(
  { name, props = {} }: { name: string; props?: Record<string, unknown> },
) {
  const component = islandRegistry.get(name);
  if (!component) throw new Error(`no island named ${name} in islands/`);
  return h(
    "div",
    { "data-island": name, "data-props": JSON.stringify(props) },
    h(component, props),
  );
}

async function* walk(dir: URL, prefix = ""): AsyncGenerator<[string, URL]> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) {
      yield* walk(url, `${prefix}/${entry.name}`);
    } else if (/\.(tsx?|jsx?)$/.test(entry.name)) {
      yield [`${prefix}/${entry.name}`, url];
    }
  }
}

/** routes/account/data.ts → /account/data, routes/index.tsx → / */
function routePath(file: string): string {
  const path = file.replace(/\.(tsx?|jsx?)$/, "").replace(/\/index$/, "");
  return path === "" ? "/" : path;
}

// Browser modules: the boot script and Preact itself, from the versions the
// server renders with (no CDN).
const BOOT_JS = `import { h, hydrate } from "preact";
for (const element of document.querySelectorAll("[data-island]")) {
  const { default: island } = await import("/_frsh/islands/" + element.dataset.island + ".js");
  hydrate(h(island, JSON.parse(element.dataset.props || "{}")), element);
}
`;

async function browserModules(): Promise<Map<string, string>> {
  const read = async (specifier: string) =>
    await Deno.readTextFile(new URL(import.meta.resolve(specifier)));
  return new Map([
    ["/_frsh/js/boot.js", BOOT_JS],
    ["/_frsh/js/preact.mjs", await read("preact")],
    ["/_frsh/js/hooks.mjs", await read("preact/hooks")],
  ]);
}

const IMPORT_MAP = JSON.stringify({
  imports: { "preact": "/_frsh/js/preact.mjs", "preact/hooks": "/_frsh/js/hooks.mjs" },
});

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
};

export async function createApp(root: URL, config: AppConfig) {
  const routes = new Map<string, RouteModule>();
  let app: AppComponent | undefined;
  let middleware: MiddlewareModule | undefined;
  let notFound: ComponentType<PageProps<unknown>> | undefined;
  for await (const [file, url] of walk(new URL("routes/", root))) {
    const module = await import(url.href);
    if (file === "/_app.tsx") app = module.default;
    else if (file === "/_middleware.ts") middleware = module;
    else if (file === "/_404.tsx") notFound = module.default;
    else routes.set(routePath(file), module);
  }
  const islandSources = new Map<string, string>();
  for await (const [file, url] of walk(new URL("islands/", root))) {
    const name = file.slice(1).replace(/\.js$/, "");
    islandRegistry.set(name, (await import(url.href)).default);
    islandSources.set(`/_frsh/islands/${name}.js`, await Deno.readTextFile(url));
  }
  const modules = new Map([...await browserModules(), ...islandSources]);

  const page = (
    component: ComponentType<PageProps<unknown>>,
    props: PageProps<unknown>,
    init: ResponseInit = {},
  ): Response => {
    const body = h(component, props) as VNode<unknown>;
    const tree = app ? h(app, { state: props.state, children: body }) as VNode<unknown> : body;
    const inner = renderToString(tree);
    const nonce = props.state.nonce;
    // The boot script only where an island needs it.
    const scripts = inner.includes("data-island=")
      ? `<script type="importmap" nonce="${nonce}">${IMPORT_MAP}</script>` +
        `<script type="module" nonce="${nonce}" src="/_frsh/js/boot.js"></script>`
      : "";
    const html = `<!DOCTYPE html>${inner.replace("</head>", `${scripts}</head>`)}`;
    const headers = new Headers(init.headers);
    headers.set("content-type", "text/html; charset=utf-8");
    headers.set(
      "content-security-policy",
      `default-src 'self'; script-src 'self' 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` +
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) headers.set(name, value);
    return new Response(html, { ...init, headers });
  };

  return async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const asset = modules.get(url.pathname);
    if (asset !== undefined && req.method === "GET") {
      return new Response(asset, {
        headers: {
          "content-type": "text/javascript; charset=utf-8",
          "cache-control": "public, max-age=300",
          ...SECURITY_HEADERS,
        },
      });
    }
    const state: State = {
      user: null,
      authorization: null,
      nonce: crypto.randomUUID().replaceAll("-", ""),
    };
    const route = routes.get(url.pathname);
    const make = (
      component: ComponentType<PageProps<unknown>> | undefined,
    ): Context<unknown> => ({
      url,
      state,
      config,
      render: (data, init) => {
        if (!component) return new Response("no page component", { status: 500 });
        return page(component, { url, data, state }, init);
      },
      next: async () => {
        if (!route) {
          return notFound
            ? page(notFound, { url, data: undefined, state }, { status: 404 })
            : new Response("not found", { status: 404 });
        }
        const handler = typeof route.handler === "function"
          ? route.handler
          : route.handler?.[req.method] ??
            (req.method === "GET" && route.default ? (_r, c) => c.render() : undefined);
        if (!handler) {
          return new Response("method not allowed", { status: 405 });
        }
        return await handler(req, make(route.default));
      },
    });
    try {
      const ctx = make(undefined);
      return middleware ? await middleware.handler(req, ctx) : await ctx.next();
    } catch (error) {
      console.error(`${req.method} ${url.pathname}:`, error);
      return new Response("internal error", { status: 500 });
    }
  };
}
