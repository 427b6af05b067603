// Taking the memory image (image.ts) of a PGlite that has just booted: its memory's non-zero pages, the files under
// the roots Postgres writes to, and its open descriptors; and finding its WASM instance, which PGlite does not expose.

import type { PGlite } from '@electric-sql/pglite'
import {
  PAGE,
  PGDATA,
  isDir,
  isFile,
  isLink,
  isZero,
  type EngineImage,
  type FsNode,
  type ImageEntry,
  type Instances,
  type Module,
  type WasmInstance,
} from './image.ts'

/** Where Postgres keeps what it writes at and after start: its data dir, its dynamic shared memory, temporary files. */
const ROOTS = [PGDATA, '/dev/shm', '/tmp']

/**
 * The WASM instances made in this thread from now on, with their imports: the image needs what PGlite does not expose
 * (the function table, the stack pointer, the pipe syscall). Call once per thread, before PGlite is created.
 */
export function watchInstances(): Instances {
  // By memory, weakly: a process that starts many databases (a test's) does not keep the closed ones' memories.
  const seen = new WeakMap<object, WasmInstance>()
  const wasmGlobal = (
    globalThis as unknown as {
      WebAssembly: {
        instantiate: (source: unknown, imports?: Record<string, Record<string, unknown>>) => Promise<unknown>
      }
    }
  ).WebAssembly
  const instantiate = wasmGlobal.instantiate.bind(wasmGlobal)
  wasmGlobal.instantiate = async (source, imports) => {
    const result = (await instantiate(source, imports)) as {
      instance?: { exports: Record<string, unknown> }
      exports?: Record<string, unknown>
    }
    const exports = result.instance?.exports ?? result.exports
    const memory = imports?.env?.memory
    if (memory && typeof memory === 'object' && exports && typeof imports.env!.__syscall_pipe2 === 'function')
      seen.set(memory, { env: imports.env!, exports })
    return result
  }
  return (memory) => (memory && typeof memory === 'object' ? (seen.get(memory) ?? null) : null)
}

/**
 * The image of `db`, which has just started (nothing was run on it but PGlite's own start-up). Throws if its state
 * holds something a copy could not carry: a loaded library, a file open outside the roots, a pipe holding bytes.
 */
export function takeImage(db: PGlite, instances: Instances, timerDeadline: number): EngineImage {
  const mod = (db as unknown as { mod: Module }).mod
  const instance = instances(mod.wasmMemory)
  if (!instance) throw new Error('cannot image a database: its WASM instance was not seen')
  const { FS } = mod
  const table = instance.exports.__indirect_function_table as { length: number }
  const stackPointer = (instance.exports.__stack_pointer as { value: number }).value

  // Memory: the non-zero pages only (after start-up, most of it was never written).
  const memory = new Uint8Array(mod.wasmMemory.buffer)
  const used: number[] = []
  for (let page = 0; page < memory.length / PAGE; page++)
    if (!isZero(memory.subarray(page * PAGE, (page + 1) * PAGE))) used.push(page)
  const pages = new SharedArrayBuffer(used.length * PAGE)
  const packed = new Uint8Array(pages)
  used.forEach((page, i) => packed.set(memory.subarray(page * PAGE, (page + 1) * PAGE), i * PAGE))

  // Files under the roots.
  const entries: ImageEntry[] = []
  let total = 0
  const visit = (path: string): void => {
    let node: FsNode
    try {
      node = FS.lookupPath(path, { follow: false }).node
    } catch {
      return
    }
    if (isDir(node.mode)) {
      if (node.mounted || !node.contents || node.contents instanceof Uint8Array)
        throw new Error(`cannot image a database: ${path} is not an in-memory directory`)
      entries.push({ path, mode: node.mode })
      for (const name of Object.keys(node.contents)) visit(`${path}/${name}`)
    } else if (isFile(node.mode)) {
      entries.push({ path, mode: node.mode, offset: total, size: node.usedBytes })
      total += node.usedBytes
    } else if (isLink(node.mode)) {
      entries.push({ path, mode: node.mode, link: node.link! })
    } else {
      throw new Error(`cannot image a database: ${path} is neither a file, a directory nor a link`)
    }
  }
  for (const root of ROOTS) visit(root)
  const files = new SharedArrayBuffer(total)
  const bytes = new Uint8Array(files)
  for (const entry of entries) {
    if (entry.size === undefined) continue
    const node = FS.lookupPath(entry.path, { follow: false }).node
    bytes.set((node.contents as Uint8Array).subarray(0, entry.size), entry.offset)
  }

  // Descriptors: 0-2 are the standard ones every instance has.
  const streams: EngineImage['streams'] = []
  const pipes: EngineImage['pipes'] = []
  const pipeEnds = new Map<unknown, { read?: number; write?: number }>()
  FS.streams.forEach((stream, fd) => {
    if (!stream || fd <= 2) return
    const pipe = stream.node.pipe
    if (pipe) {
      if (pipe.buckets.some((bucket) => bucket.offset > bucket.roffset))
        throw new Error('cannot image a database: a pipe holds bytes')
      const ends = pipeEnds.get(pipe) ?? {}
      ends[(stream.flags & 3) === 1 ? 'write' : 'read'] = fd
      pipeEnds.set(pipe, ends)
      return
    }
    const path = FS.getPath(stream.node)
    if (!ROOTS.some((root) => path.startsWith(`${root}/`)) || !isFile(stream.node.mode))
      throw new Error(`cannot image a database: ${path} is open`)
    streams.push({ fd, path, flags: stream.flags, position: stream.position })
  })
  for (const ends of pipeEnds.values()) {
    if (ends.read === undefined || ends.write === undefined)
      throw new Error('cannot image a database: a pipe has one end open')
    pipes.push({ read: ends.read, write: ends.write })
  }

  return {
    memoryBytes: memory.length,
    pages,
    pageNumbers: Int32Array.from(used),
    stackPointer,
    tableLength: table.length,
    files,
    entries,
    streams,
    pipes,
    cwd: FS.cwd(),
    timerDeadline,
  }
}
