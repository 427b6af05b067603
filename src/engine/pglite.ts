// PGlite.create for a database that stays open: PGlite keeps its options object for as long as it is open, so a
// loadDataDir tarball given to it (40 MB for the example schema) would stay in memory with it. Its in-memory files
// grow in large steps (memory-files.ts). A tarball PGlite opens is handed to it without a copy (TarballBlob).

import { PGlite, type PGliteOptions } from '@electric-sql/pglite'
import { growFilesInLargeSteps } from './memory-files.ts'
import { guardPGlite } from '../server/session/pglite-guards.ts'

export async function openPGlite(options: PGliteOptions): Promise<PGlite> {
  const own = { ...options }
  const db = await PGlite.create(own)
  delete own.loadDataDir
  growFilesInLargeSteps(db)
  guardPGlite(db)
  return db
}

/**
 * `bytes` (a data dir tarball) as the Blob PGlite's `loadDataDir` takes, without copying them. PGlite reads the
 * tarball once, with `arrayBuffer()`, and looks at its `type` (a gzip one is unpacked first); a Blob made the usual
 * way (`new Blob([bytes])`) is a copy, and its `arrayBuffer()` another, read in chunks and joined: 0.6 s of CPU for the
 * example schema's 40 MB in a profile of `--memory`'s start. `bytes()` is a view of the same bytes; `slice()`,
 * `stream()` and `text()` read a copy, as a Blob's do. The thread that opens it owns the bytes (they were transferred
 * to it), so nothing else writes them.
 */
export class TarballBlob extends Blob {
  readonly #bytes: ArrayBuffer

  constructor(bytes: ArrayBuffer, type = 'application/x-tar') {
    super([])
    this.#bytes = bytes
    // Blob's own are getters of the prototype, reading the (empty) Blob made above.
    Object.defineProperties(this, { size: { value: bytes.byteLength }, type: { value: type } })
  }

  override arrayBuffer(): Promise<ArrayBuffer> {
    return Promise.resolve(this.#bytes)
  }

  override bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return Promise.resolve(new Uint8Array(this.#bytes))
  }

  override slice(start?: number, end?: number, contentType?: string): Blob {
    return new Blob([this.#bytes]).slice(start, end, contentType)
  }

  override stream(): ReturnType<Blob['stream']> {
    return new Blob([this.#bytes]).stream()
  }

  override text(): Promise<string> {
    return new Blob([this.#bytes]).text()
  }
}

/**
 * PGlite's bundle of files (its `fsBundle`) from memory shared by every thread, without a copy: Emscripten's loader
 * accepts only an ArrayBuffer (it compares the constructor's name) but reads it through a Uint8Array, as it does a
 * SharedArrayBuffer, and keeps each file as a view of it (copied on its first write: copyBundleFilesOnWrite).
 */
export function sharedBundleBlob(shared: SharedArrayBuffer): Blob {
  Object.defineProperty(shared, 'constructor', { value: ArrayBuffer })
  return new TarballBlob(shared as unknown as ArrayBuffer, 'application/octet-stream')
}
