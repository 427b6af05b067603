// A new PGlite started from a memory image (image.ts) instead of booting: the file systems that copy the image in at
// the point where PGlite would load a data dir and run Postgres's start-up, and the copy made of a shared file's
// bytes before its first write.

import { MemoryFS, type PGlite } from '@electric-sql/pglite'
import { NodeFS } from '@electric-sql/pglite/nodefs'
import { FILE_GROWTH_STEP, SMALL_FILE } from './memory-files.ts'
import {
  PAGE,
  PGDATA,
  isDir,
  isLink,
  isZero,
  type EngineImage,
  type FsNode,
  type FsStream,
  type Instances,
  type Memfs,
  type Module,
  type WriteOp,
} from './image.ts'

/** What PGlite's start-up returns once Postgres runs (PGlite's own PGLITE_EXIT_ALIVE). */
const EXIT_ALIVE = 99

/** Files whose bytes are still the image's (shared with other databases): copied before the first write to them. */
const sharedFiles = new WeakSet<FsNode>()

/**
 * What a file system that starts PGlite from `image` is given: the instances watchInstances() saw, and `setTimer`,
 * which arms Postgres's timer where stoppable.ts keeps it, as the image had it.
 */
interface ImageStart {
  image: EngineImage
  instances: Instances
  setTimer: (deadline: number) => void
}

/**
 * PGlite's in-memory file system, which puts `image` in place of a data dir: once PGlite's module is ready (its
 * initialSyncFs), the memory, files and descriptors are copied in and Postgres's start-up is skipped. PGlite then
 * carries on as after a start (its array types, extensions' init). Open it without loadDataDir, with the
 * initialMemory of the image and the same options as the instance the image came from.
 */
export class ImageFS extends MemoryFS {
  #start: ImageStart | null

  constructor(image: EngineImage, instances: Instances, setTimer: (deadline: number) => void) {
    super()
    this.#start = { image, instances, setTimer }
  }

  override async initialSyncFs(): Promise<void> {
    await super.initialSyncFs()
    restoreInto(this.pg, this.#start!, false)
    this.#start = null
  }
}

/** As ImageFS, on a data dir that writeDataDir() filled with the image's files: Postgres's files are on disk. */
export class ImageNodeFS extends NodeFS {
  // Let go once copied in: the image is not this database's to keep (a data dir's server holds none while idle).
  #start: ImageStart | null

  constructor(dataDir: string, image: EngineImage, instances: Instances, setTimer: (deadline: number) => void) {
    super(dataDir)
    this.#start = { image, instances, setTimer }
  }

  override async initialSyncFs(): Promise<void> {
    await super.initialSyncFs()
    restoreInto(this.pg, this.#start!, true)
    this.#start = null
  }
}

/**
 * The image copied into the module of `pg`, once it is ready (ImageFS's and ImageNodeFS's initialSyncFs). `onDisk`:
 * the data dir's files are there already (a node file system on a data dir writeDataDir() filled).
 */
function restoreInto(pg: PGlite | undefined, { image, instances, setTimer }: ImageStart, onDisk: boolean): void {
  const mod = (pg as unknown as { mod: Module }).mod
  const instance = instances(mod.wasmMemory)
  if (!instance) throw new Error('cannot start from an image: the WASM instance was not seen')
  const { FS } = mod
  const table = instance.exports.__indirect_function_table as { length: number }
  if (table.length !== image.tableLength)
    throw new Error(`cannot start from an image: function tables differ (${table.length}, ${image.tableLength})`)

  // Pipes first: the syscall gives the lowest free descriptors, moved to their numbers below with the rest.
  const scratch = mod._malloc(8)
  const made: Array<{ stream: FsStream; fd: number }> = []
  for (const pipe of image.pipes) {
    if ((instance.env.__syscall_pipe2 as (fds: number, flags: number) => number)(scratch, 0) !== 0)
      throw new Error('cannot start from an image: pipe failed')
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
    const contents = bytes.subarray(entry.offset!, entry.offset! + entry.size!)
    node.usedBytes = entry.size!
    // On disk only /dev/shm and /tmp are left here, about 1 MB: copied, so the database does not hold the image's files.
    node.contents = onDisk ? contents.slice() : contents
    if (!onDisk) sharedFiles.add(node)
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
  // Postgres's timer, due when the image's was.
  setTimer(image.timerDeadline)
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

/**
 * PGlite's files from its bundle in shared memory (`bundle`, thread-bootstrap.ts sharedFsBundle) are views of it in
 * every thread: each is copied on its first write, as the image's files are, so no write reaches another thread's.
 * False if this PGlite's file system cannot be reached (then nothing guards them).
 */
export function copyBundleFilesOnWrite(db: PGlite, bundle: SharedArrayBuffer): boolean {
  const mod = (db as unknown as { mod?: Partial<Module> }).mod
  if (!mod?.MEMFS?.stream_ops || !mod.FS?.root) return false
  sharePagesUntilWritten(mod.MEMFS)
  const pending: FsNode[] = [mod.FS.root]
  for (let node = pending.pop(); node; node = pending.pop()) {
    const { contents } = node
    if (contents instanceof Uint8Array) {
      if (contents.buffer === bundle) sharedFiles.add(node)
    } else if (contents && isDir(node.mode) && !node.mounted) pending.push(...Object.values(contents))
  }
  return true
}
