// What a memory image of a booted PGlite holds (its WASM memory's non-zero pages, in-memory files, open descriptors),
// from which a new one starts instead of booting, and the parts of PGlite's module it comes from: take-image.ts takes
// one, start-from-image.ts starts a new PGlite from one, image-on-disk.ts keeps one on disk.

import { PGlite } from '@electric-sql/pglite'

export const PAGE = 65536
export const PGDATA = PGlite.paths.PGDATA
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

export interface ImageEntry {
  path: string
  mode: number
  /** A file's bytes in `files`; a link's target. */
  offset?: number
  size?: number
  link?: string
}

export interface WasmInstance {
  env: Record<string, unknown>
  exports: Record<string, unknown>
}

/** The WASM instance of a memory, among those watchInstances() saw (take-image.ts). */
export type Instances = (memory: unknown) => WasmInstance | null

export interface Module {
  FS: Fs
  MEMFS: Memfs
  wasmMemory: { buffer: ArrayBuffer; grow(pages: number): number }
  callMain(args: string[]): number
  _pgl_startPGlite(): void
  _malloc(size: number): number
}

export interface FsNode {
  mode: number
  name: string
  parent: FsNode
  contents: Record<string, FsNode> | Uint8Array | null
  usedBytes: number
  link?: string
  pipe?: { buckets: Array<{ offset: number; roffset: number }> }
  mounted: unknown
}

export interface FsStream {
  fd: number
  path: string
  node: FsNode
  flags: number
  position: number
}

export interface Fs {
  root: FsNode
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

export interface Memfs {
  createNode(parent: FsNode, name: string, mode: number, dev: number): FsNode
  stream_ops: { write: WriteOp }
  ops_table: { file: { stream: { write: WriteOp } } } | null
}

export type WriteOp = (
  stream: FsStream,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
  canOwn?: boolean,
) => number

export const isDir = (mode: number) => (mode & S_IFMT) === S_IFDIR
export const isFile = (mode: number) => (mode & S_IFMT) === S_IFREG
export const isLink = (mode: number) => (mode & S_IFMT) === S_IFLNK

/** A page of zeros to compare with: a native compare is as fast in a new thread as in a warm one, a loop in JS is not. */
const ZEROS = new Uint8Array(PAGE)

/** Whether `chunk` (at most a PAGE long) holds only zeros. */
export function isZero(chunk: Uint8Array): boolean {
  return Buffer.compare(chunk, ZEROS.subarray(0, chunk.length)) === 0
}
