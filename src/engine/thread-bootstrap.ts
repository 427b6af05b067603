// How a database thread starts: the code its worker evals to load thread-worker.ts (as compiled, bundled, or from
// source), and PGlite's WASM modules, compiled once per process and handed to every thread.

import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import type { PGliteOptions } from '@electric-sql/pglite'
import type { ThreadInit } from './thread-messages.ts'
import type { Logger } from '../log.ts'

/*
 * The worker runs src/engine/thread-worker.ts as plain JavaScript. In the npm package (scripts/build-package.ts),
 * that is thread-worker.js beside this file's thread.js. Bundled by bin/cli-bundle.js (the repo's bin runs
 * dist/cli-<hash>/cli.mjs), it is db-thread-worker.mjs beside the bundle. From source (tsx, vitest) the bundler is asked for a
 * bundle of the current sources (rebuilt when one changed, about 1 ms to check): loading TypeScript through tsx in
 * each thread instead cost 1-3 s per thread when several started at once. tsx's loader hooks do not reach worker
 * threads (Node 20), so without the bundler the worker registers tsx itself.
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const WORKER_BESIDE = import.meta.url.endsWith('/thread-bootstrap.js') ? './thread-worker.js' : './db-thread-worker.mjs'
const BUNDLER = new URL('../../bin/cli-bundle.js', import.meta.url).href

/** The code a worker evals to load thread-worker.ts (see above). */
export async function bootstrap(): Promise<string> {
  if (!FROM_SOURCE) return importOf(new URL(WORKER_BESIDE, import.meta.url).href)
  let bundle: string
  try {
    bundle = await ((await import(BUNDLER)) as { bundleDir(): Promise<string> }).bundleDir()
  } catch (error) {
    warnOnce(
      `database threads load TypeScript through tsx (slower to start): cannot bundle the worker: ${(error as Error).message.split('\n')[0]}`,
    )
    return tsxBootstrap()
  }
  return importOf(pathToFileURL(join(bundle, 'db-thread-worker.mjs')).href)
}

const importOf = (url: string) => `import(${JSON.stringify(url)})`

let warned = false
function warnOnce(message: string): void {
  if (warned) return
  warned = true
  process.emitWarning(message)
}

/**
 * tsx's ESM API is found through its package.json (import.meta.resolve is not in every loader: vitest's module runner
 * lacks it; and require's rules would give the CJS build, which cannot load its ESM half from a worker).
 */
function tsxBootstrap(): string {
  const manifest = createRequire(import.meta.url).resolve('tsx/package.json')
  const api = (
    JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> }
  ).exports['./esm/api']!.import.default
  const tsx = pathToFileURL(join(dirname(manifest), api)).href
  const entry = new URL('./thread-worker.ts', import.meta.url).href
  return `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return ${importOf(entry)} })`
}

/**
 * What the first database thread of a process needs and takes a while to get (PGlite's WASM compiled, its bundle of
 * files read; both kept once got), begun now, while the caller does other work. A failure is not kept: the thread's
 * start tries again and reports it.
 */
export function prepareThreads(log: Logger): void {
  for (const preparing of [pgliteWasm(), sharedFsBundle()]) {
    preparing.catch((error: unknown) =>
      log.debug('preparing database threads failed; the first one tries again', { error }),
    )
  }
}

let compiledWasm: Promise<ThreadInit['wasm']> | null = null
/** The global WebAssembly, which this project's libs (ES2023, no DOM) do not declare as a value. */
const wasmCompile = (
  globalThis as unknown as {
    WebAssembly: { compile(bytes: Uint8Array): Promise<NonNullable<PGliteOptions['pgliteWasmModule']>> }
  }
).WebAssembly.compile

/** Where PGlite's WASM and bundle of files are: beside its entry (either build: both are in dist/). */
const pgliteDist = (): URL =>
  new URL('.', pathToFileURL(createRequire(import.meta.url).resolve('@electric-sql/pglite')))

/** PGlite's two WASM modules, compiled once per process (a failure is not kept: the next create() tries again). */
export function pgliteWasm(): Promise<ThreadInit['wasm']> {
  compiledWasm ??= (async () => {
    const dist = pgliteDist()
    const compile = async (file: string) => wasmCompile(await readFile(new URL(file, dist)))
    try {
      const [pgliteWasmModule, initdbWasmModule] = await Promise.all([compile('pglite.wasm'), compile('initdb.wasm')])
      return { pgliteWasmModule, initdbWasmModule } satisfies Pick<
        PGliteOptions,
        'pgliteWasmModule' | 'initdbWasmModule'
      >
    } catch (error) {
      compiledWasm = null
      throw error
    }
  })()
  return compiledWasm
}

let fsBundle: Promise<SharedArrayBuffer> | null = null

/**
 * PGlite's bundle of files (share/, timezones, 6 MB), read once per process into shared memory: each PGlite reads
 * it again and keeps its files as views of its own copy otherwise (a failure is not kept).
 */
export function sharedFsBundle(): Promise<SharedArrayBuffer> {
  fsBundle ??= (async () => {
    try {
      const bytes = await readFile(new URL('pglite.data', pgliteDist()))
      const shared = new SharedArrayBuffer(bytes.length)
      new Uint8Array(shared).set(bytes)
      return shared
    } catch (error) {
      fsBundle = null
      throw error
    }
  })()
  return fsBundle
}
