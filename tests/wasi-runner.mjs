// Cargo runner for wasm32-wasip1 test binaries: runs them under Node's WASI
// (preview1), so the core's unit tests execute where the filter runs:
// 32-bit usize, WASI random_get and clock_time_get.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [wasmPath, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [wasmPath, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
// Any import outside WASI (none are expected) fails loudly if called.
const imports = { wasi_snapshot_preview1: wasi.wasiImport };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== "wasi_snapshot_preview1") {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => { throw new Error(`unexpected host call ${imp.module}.${imp.name}`); };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// A binary that links the filter's library (a bench) also carries the
// proxy-wasm reactor entry `_initialize`; as a command it runs `_start`.
const { _initialize, ...commandExports } = instance.exports;
exit(wasi.start(_initialize && commandExports._start ? { exports: commandExports } : instance));
