// A new database started from the memory image of one that has booted, instead of booting it: the image holds the
// booted instance's WASM memory (its non-zero pages), its in-memory files and its open file descriptors, and is copied
// into a new PGlite instance at the point where PGlite would load a data dir and run Postgres's start-up.

import { MemoryFS, PGlite } from '@electric-sql/pglite'
import { NodeFS } from '@electric-sql/pglite/nodefs'
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FILE_GROWTH_STEP, SMALL_FILE } from './memory-files.ts'

const PAGE = 65536
const PGDATA = PGlite.paths.PGDATA
/** Where Postgres keeps what it writes at and after start: its data dir, its dynamic shared memory, temporary files. */
const ROOTS = [PGDATA, '/dev/shm', '/tmp']
/** What PGlite's start-up returns once Postgres runs (PGlite's own PGLITE_EXIT_ALIVE). */
const EXIT_ALIVE = 99
const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000

/**
 * A booted instance's state, in shared memory so that every thread it is posted to reads the same bytes. Files are
 * shared until a database writes to one (then it gets its own copy).
 */
export interface EngineImage {
  memoryBytes: number
  /** The non-zero 64 KiB pages of the memory, one after another, and where each was. */
  pages: SharedArrayBuffer
  pageNumbers: Int32Array
  /** The WASM stack pointer: Postgres keeps pointers into the arguments PGlite's start-up left on the stack. */
  stackPointer: number
  /** The function table's length: longer than a fresh instance's if a library was loaded, which cannot be carried. */
  tableLength: number
  files: SharedArrayBuffer
  entries: ImageEntry[]
  /** Open descriptors of the files above, and pipes (Postgres's latch), each at its number. */
  streams: Array<{ fd: number; path: string; flags: number; position: number }>
  pipes: Array<{ read: number; write: number }>
  cwd: string
  /**
   * When Postgres's timer is due (ms since the epoch, 0: not armed), as stoppable.ts records it: a copy's is due then
   * too (Postgres armed it at start-up, for its idle statistics, and arms no other while it waits for this one).
   */
  timerDeadline: number
}

interface ImageEntry {
  path: string
  mode: number
  /** A file's bytes in `files`; a link's target. */
  offset?: number
  size?: number
  link?: string
}

interface WasmInstance {
  env: Record<string, unknown>
  exports: Record<string, unknown>
}

/**
 * The WASM instances made in this thread from now on, with their imports: the image needs what PGlite does not expose
 * (the function table, the stack pointer, the pipe syscall). Call once per thread, before PGlite is created.
 */
export function watchInstances(): (memory: unknown) => WasmInstance | null {
  const seen: WasmInstance[] = []
  const wasmGlobal = (globalThis as unknown as { WebAssembly: { instantiate: (source: unknown, imports?: Record<string, Record<string, unknown>>) => Promise<unknown> } }).WebAssembly
  const instantiate = wasmGlobal.instantiate.bind(wasmGlobal)
  wasmGlobal.instantiate = async (source, imports) => {
    const result = (await instantiate(source, imports)) as { instance?: { exports: Record<string, unknown> }; exports?: Record<string, unknown> }
    const exports = result.instance?.exports ?? result.exports
    if (imports?.env && exports && typeof imports.env.__syscall_pipe2 === 'function') seen.push({ env: imports.env, exports })
    return result
  }
  return (memory) => seen.find((instance) => instance.env.memory === memory) ?? null
}

interface Module {
  FS: Fs
  MEMFS: Memfs
  wasmMemory: { buffer: ArrayBuffer; grow(pages: number): number }
  callMain(args: string[]): number
  _pgl_startPGlite(): void
  _malloc(size: number): number
}

interface FsNode {
  mode: number
  name: string
  parent: FsNode
  contents: Record<string, FsNode> | Uint8Array | null
  usedBytes: number
  link?: string
  pipe?: { buckets: Array<{ offset: number; roffset: number }> }
  mounted: unknown
}

interface FsStream {
  fd: number
  path: string
  node: FsNode
  flags: number
  position: number
}

interface Fs {
  streams: Array<FsStream | null>
  cwd(): string
  chdir(path: string): void
  lookupPath(path: string, options?: { follow?: boolean }): { node: FsNode }
  mkdirTree(path: string, mode?: number): void
  symlink(target: string, path: string): void
  open(path: string, flags: number, mode?: number): FsStream
  close(stream: FsStream): void
  getPath(node: FsNode): string
}

interface Memfs {
  createNode(parent: FsNode, name: string, mode: number, dev: number): FsNode
  stream_ops: { write: WriteOp }
  ops_table: { file: { stream: { write: WriteOp } } } | null
}

type WriteOp = (stream: FsStream, buffer: Uint8Array, offset: number, length: number, position: number, canOwn?: boolean) => number

const isDir = (mode: number) => (mode & S_IFMT) === S_IFDIR
const isFile = (mode: number) => (mode & S_IFMT) === S_IFREG
const isLink = (mode: number) => (mode & S_IFMT) === S_IFLNK

/**
 * The image of `db`, which has just started (nothing was run on it but PGlite's own start-up). Throws if its state
 * holds something a copy could not carry: a loaded library, a file open outside the roots, a pipe holding bytes.
 */
export function takeImage(db: PGlite, instances: (memory: unknown) => WasmInstance | null, timerDeadline: number): EngineImage {
  const mod = (db as unknown as { mod: Module }).mod
  const instance = instances(mod.wasmMemory)
  if (!instance) throw new Error('cannot image a database: its WASM instance was not seen')
  const { FS } = mod
  const table = instance.exports.__indirect_function_table as { length: number }
  const stackPointer = (instance.exports.__stack_pointer as { value: number }).value

  // Memory: the non-zero pages only (after start-up, most of it was never written).
  const memory = new Uint8Array(mod.wasmMemory.buffer)
  const used: number[] = []
  for (let page = 0; page < memory.length / PAGE; page++) if (!isZero(memory.subarray(page * PAGE, (page + 1) * PAGE))) used.push(page)
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
      if (node.mounted || !node.contents || node.contents instanceof Uint8Array) throw new Error(`cannot image a database: ${path} is not an in-memory directory`)
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
      if (pipe.buckets.some((bucket) => bucket.offset > bucket.roffset)) throw new Error('cannot image a database: a pipe holds bytes')
      const ends = pipeEnds.get(pipe) ?? {}
      ends[(stream.flags & 3) === 1 ? 'write' : 'read'] = fd
      pipeEnds.set(pipe, ends)
      return
    }
    const path = FS.getPath(stream.node)
    if (!ROOTS.some((root) => path.startsWith(`${root}/`)) || !isFile(stream.node.mode)) throw new Error(`cannot image a database: ${path} is open`)
    streams.push({ fd, path, flags: stream.flags, position: stream.position })
  })
  for (const ends of pipeEnds.values()) {
    if (ends.read === undefined || ends.write === undefined) throw new Error('cannot image a database: a pipe has one end open')
    pipes.push({ read: ends.read, write: ends.write })
  }

  return { memoryBytes: memory.length, pages, pageNumbers: Int32Array.from(used), stackPointer, tableLength: table.length, files, entries, streams, pipes, cwd: FS.cwd(), timerDeadline }
}

/** Files whose bytes are still the image's (shared with other databases): copied before the first write to them. */
const sharedFiles = new WeakSet<FsNode>()

/**
 * PGlite's in-memory file system, which puts `image` in place of a data dir: once PGlite's module is ready (its
 * initialSyncFs), the memory, files and descriptors are copied in and Postgres's start-up is skipped. PGlite then
 * carries on as after a start (its array types, extensions' init). Open it without loadDataDir, with the
 * initialMemory of the image and the same options as the instance the image came from.
 */
export class ImageFS extends MemoryFS {
  readonly #image: EngineImage
  readonly #instances: (memory: unknown) => WasmInstance | null
  readonly #setTimer: (deadline: number) => void

  /** `setTimer`: arms Postgres's timer where stoppable.ts keeps it, as the image had it. */
  constructor(image: EngineImage, instances: (memory: unknown) => WasmInstance | null, setTimer: (deadline: number) => void) {
    super()
    this.#image = image
    this.#instances = instances
    this.#setTimer = setTimer
  }

  override async initialSyncFs(): Promise<void> {
    await super.initialSyncFs()
    const mod = (this.pg as unknown as { mod: Module }).mod
    restore(mod, this.#image, this.#instances(mod.wasmMemory), false)
    this.#setTimer(this.#image.timerDeadline)
  }
}

/** As ImageFS, on a data dir that writeDataDir() filled with the image's files: Postgres's files are on disk. */
export class ImageNodeFS extends NodeFS {
  readonly #image: EngineImage
  readonly #instances: (memory: unknown) => WasmInstance | null
  readonly #setTimer: (deadline: number) => void

  constructor(dataDir: string, image: EngineImage, instances: (memory: unknown) => WasmInstance | null, setTimer: (deadline: number) => void) {
    super(dataDir)
    this.#image = image
    this.#instances = instances
    this.#setTimer = setTimer
  }

  override async initialSyncFs(): Promise<void> {
    await super.initialSyncFs()
    const mod = (this.pg as unknown as { mod: Module }).mod
    restore(mod, this.#image, this.#instances(mod.wasmMemory), true)
    this.#setTimer(this.#image.timerDeadline)
  }
}

/** `onDisk`: the data dir's files are there already (a node file system on a data dir writeDataDir() filled). */
function restore(mod: Module, image: EngineImage, instance: WasmInstance | null, onDisk: boolean): void {
  if (!instance) throw new Error('cannot start from an image: the WASM instance was not seen')
  const { FS } = mod
  const table = instance.exports.__indirect_function_table as { length: number }
  if (table.length !== image.tableLength) throw new Error(`cannot start from an image: function tables differ (${table.length}, ${image.tableLength})`)

  // Pipes first: the syscall gives the lowest free descriptors, moved to their numbers below with the rest.
  const scratch = mod._malloc(8)
  const made: Array<{ stream: FsStream; fd: number }> = []
  for (const pipe of image.pipes) {
    if ((instance.env.__syscall_pipe2 as (fds: number, flags: number) => number)(scratch, 0) !== 0) throw new Error('cannot start from an image: pipe failed')
    const fds = new Int32Array(mod.wasmMemory.buffer, scratch, 2)
    made.push({ stream: FS.streams[fds[0]!]!, fd: pipe.read }, { stream: FS.streams[fds[1]!]!, fd: pipe.write })
  }

  // Files: new nodes whose bytes are the image's until written.
  sharePagesUntilWritten(mod.MEMFS)
  const bytes = new Uint8Array(image.files)
  // Entries come parents first: each directory is looked up or made once.
  const dirs = new Map<string, FsNode>()
  const dirOf = (path: string): FsNode => {
    let node = dirs.get(path)
    if (!node) {
      node = FS.lookupPath(path || '/').node
      dirs.set(path, node)
    }
    return node
  }
  for (const entry of image.entries) {
    if (onDisk && (entry.path === PGDATA || entry.path.startsWith(`${PGDATA}/`))) continue
    const slash = entry.path.lastIndexOf('/')
    const parent = dirOf(entry.path.slice(0, slash))
    const name = entry.path.slice(slash + 1)
    const existing = (parent.contents as Record<string, FsNode>)[name]
    if (isDir(entry.mode)) {
      dirs.set(entry.path, existing ?? mod.MEMFS.createNode(parent, name, entry.mode, 0))
      continue
    }
    if (existing) throw new Error(`cannot start from an image: ${entry.path} exists`)
    if (isLink(entry.mode)) {
      FS.symlink(entry.link!, entry.path)
      continue
    }
    const node = mod.MEMFS.createNode(parent, name, entry.mode, 0)
    node.contents = bytes.subarray(entry.offset!, entry.offset! + entry.size!)
    node.usedBytes = entry.size!
    sharedFiles.add(node)
  }
  for (const stream of image.streams) {
    const opened = FS.open(stream.path, stream.flags & ~(0o100 | 0o200 | 0o1000)) // without O_CREAT, O_EXCL, O_TRUNC
    opened.flags = stream.flags
    opened.position = stream.position
    made.push({ stream: opened, fd: stream.fd })
  }
  for (const { stream } of made) FS.streams[stream.fd] = null
  for (const { stream, fd } of made) {
    if (FS.streams[fd]) throw new Error(`cannot start from an image: descriptor ${fd} is taken`)
    stream.fd = fd
    FS.streams[fd] = stream
  }
  FS.chdir(image.cwd)

  // Memory: what this instance wrote while it started is below its heap's break; the image's pages go over it.
  const sbrk = (instance.exports.emscripten_get_sbrk_ptr as () => number)()
  const ownEnd = new Uint32Array(mod.wasmMemory.buffer)[sbrk >> 2]!
  const size = mod.wasmMemory.buffer.byteLength
  if (size < image.memoryBytes) mod.wasmMemory.grow((image.memoryBytes - size) / PAGE)
  const memory = new Uint8Array(mod.wasmMemory.buffer)
  // Below its break, the pages the image has no bytes for are emptied; the others are overwritten.
  const pages = new Uint8Array(image.pages)
  let next = 0
  for (const [i, page] of image.pageNumbers.entries()) {
    if (next < page * PAGE && next < ownEnd) memory.fill(0, next, Math.min(page * PAGE, ownEnd))
    memory.set(pages.subarray(i * PAGE, (i + 1) * PAGE), page * PAGE)
    next = (page + 1) * PAGE
  }
  if (next < ownEnd) memory.fill(0, next, ownEnd)
  ;(instance.exports.__stack_pointer as { value: number }).value = image.stackPointer

  // Postgres runs already: PGlite's start-up calls become no-ops, once.
  const { callMain, _pgl_startPGlite: start } = mod
  mod.callMain = () => {
    mod.callMain = callMain
    return EXIT_ALIVE
  }
  mod._pgl_startPGlite = () => {
    mod._pgl_startPGlite = start
  }
}

/** A file shared with the image gets bytes of its own before anything writes to it (all writes go through here). */
function sharePagesUntilWritten(memfs: Memfs): void {
  const write = memfs.stream_ops.write
  if ((write as { copiesShared?: boolean }).copiesShared) return
  const copying: WriteOp = (stream, ...rest) => {
    const node = stream.node
    if (sharedFiles.has(node)) {
      sharedFiles.delete(node)
      node.contents = ownCopy(node.contents as Uint8Array, node.usedBytes)
    }
    return write(stream, ...rest)
  }
  ;(copying as { copiesShared?: boolean }).copiesShared = true
  memfs.stream_ops.write = copying
  if (memfs.ops_table) memfs.ops_table.file.stream.write = copying
}

/**
 * A file's bytes, copied. A large one (a WAL segment is 16 MB, mostly zeros ahead of what was written) goes into an
 * array of FILE_GROWTH_STEP, which glibc maps on its own: its pages take memory only once written, so only the
 * non-zero chunks are copied.
 */
function ownCopy(bytes: Uint8Array, used: number): Uint8Array {
  if (used <= SMALL_FILE) return bytes.slice(0, used)
  const copy = new Uint8Array(Math.ceil(used / FILE_GROWTH_STEP) * FILE_GROWTH_STEP)
  for (let at = 0; at < used; at += PAGE) {
    const chunk = bytes.subarray(at, Math.min(at + PAGE, used))
    if (!isZero(chunk)) copy.set(chunk, at)
  }
  return copy
}

function isZero(chunk: Uint8Array): boolean {
  const words = chunk.length % 4 === 0 && chunk.byteOffset % 4 === 0 ? new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.length / 4) : chunk
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false
  return true
}

const IMAGE_FORMAT = 2
const MANIFEST = 'image.json'
const MEMORY_FILE = 'memory.bin'
const FILES_FILE = 'files.bin'

type Manifest = Omit<EngineImage, 'pages' | 'pageNumbers' | 'files'> & { format: number; pageNumbers: number[] }

/** `image` as files in `dir` (made through a scratch dir and a rename: a reader sees all of it or none). */
export async function saveImage(image: EngineImage, dir: string): Promise<void> {
  const scratch = `${dir}.${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await mkdir(scratch, { recursive: true })
    const { pages, pageNumbers, files, ...rest } = image
    const manifest: Manifest = { format: IMAGE_FORMAT, ...rest, pageNumbers: [...pageNumbers] }
    await writeFile(join(scratch, MEMORY_FILE), new Uint8Array(pages))
    await writeFile(join(scratch, FILES_FILE), new Uint8Array(files))
    await writeFile(join(scratch, MANIFEST), JSON.stringify(manifest))
    await rename(scratch, dir).catch(async () => {
      // Another process saved the same image first; or an older format's is there, which goes.
      if (await loadManifest(dir)) return
      await rm(dir, { recursive: true, force: true })
      await rename(scratch, dir)
    })
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/** The image saved in `dir`, or null if there is none (or of another format). */
export async function loadImage(dir: string): Promise<EngineImage | null> {
  const manifest = await loadManifest(dir)
  if (!manifest) return null
  const [pages, files] = await Promise.all([readShared(join(dir, MEMORY_FILE)), readShared(join(dir, FILES_FILE))])
  const { memoryBytes, stackPointer, tableLength, entries, streams, pipes, cwd, timerDeadline } = manifest
  return { memoryBytes, pages, pageNumbers: Int32Array.from(manifest.pageNumbers), stackPointer, tableLength, files, entries, streams, pipes, cwd, timerDeadline }
}

async function loadManifest(dir: string): Promise<Manifest | null> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest
    return manifest.format === IMAGE_FORMAT ? manifest : null
  } catch {
    return null
  }
}

/** A file's bytes in shared memory (every thread that starts from the image reads the same copy). */
async function readShared(path: string): Promise<SharedArrayBuffer> {
  const file = await open(path)
  try {
    const { size } = await file.stat()
    const shared = new SharedArrayBuffer(size)
    const view = new Uint8Array(shared)
    for (let at = 0; at < size; ) {
      const { bytesRead } = await file.read(view, at, size - at, at)
      if (bytesRead === 0) throw new Error(`${path} ended early`)
      at += bytesRead
    }
    return shared
  } finally {
    await file.close()
  }
}

/**
 * Fill the new data dir `dir` with the image's data dir files, for ImageNodeFS. PG_VERSION last: a copy cut short
 * (kill -9) has none, so the next start fills the directory again.
 */
export async function writeDataDir(image: EngineImage, dir: string): Promise<void> {
  const bytes = new Uint8Array(image.files)
  const inDataDir = image.entries.filter((entry) => entry.path.startsWith(`${PGDATA}/`))
  const pathOf = (entry: ImageEntry): string => join(dir, entry.path.slice(PGDATA.length + 1))
  const write = (entry: ImageEntry): Promise<void> => writeFile(pathOf(entry), bytes.subarray(entry.offset!, entry.offset! + entry.size!), { mode: entry.mode & 0o777 })
  // Directories first (parents before children), then every file at once.
  for (const entry of inDataDir) if (isDir(entry.mode)) await mkdir(pathOf(entry), { recursive: true, mode: entry.mode & 0o777 })
  const version = inDataDir.find((entry) => entry.path === `${PGDATA}/PG_VERSION`)
  if (!version) throw new Error('the image holds no PG_VERSION')
  await Promise.all(
    inDataDir.map((entry) => {
      if (isLink(entry.mode)) return symlink(entry.link!, pathOf(entry))
      return isFile(entry.mode) && entry !== version ? write(entry) : null
    }),
  )
  await write(version)
}
