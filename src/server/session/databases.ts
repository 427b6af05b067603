// What the server needs of the databases behind it: each one something that runs protocol messages (PGlite in this
// thread, or in a worker thread), and, for a server with several, the catalog that opens them by name.

/** Per PGlite: whether its file system does anything when synced (needsSyncToFs). */
const syncs = new WeakMap<object, boolean>()

/**
 * Whether `db` (a PGlite) must have its file system synced after a call, as PGlite does unless told not to. PGlite's
 * own in-memory and Node file systems keep the base class's empty syncToFs, which PGlite would still reach after
 * every call through its lock and three promises. (Each of its chunks carries a copy of that class: the body is what
 * tells.) Anything else, such as a database in a worker thread, keeps the default.
 */
export function needsSyncToFs(db: object): boolean {
  let needs = syncs.get(db)
  if (needs === undefined) {
    const sync = (db as { fs?: { syncToFs?: unknown } }).fs?.syncToFs
    needs = !(typeof sync === 'function' && /^(async )?syncToFs\([^)]*\)\s*\{\s*\}$/.test(String(sync)))
    syncs.set(db, needs)
  }
  return needs
}

/**
 * What a session needs of its database: PGlite itself, or a PGlite in a worker thread (engine/thread.ts). The
 * main database a server is given is always an in-process PGlite; other databases may be either.
 */
export interface SessionDb {
  readonly waitReady: Promise<void>
  runExclusive<T>(fn: () => Promise<T>): Promise<T>
  execProtocolRaw(message: Uint8Array, options?: { syncToFs?: boolean }): Promise<Uint8Array>
  /**
   * Run `message` as one call, its output to `onRawData` as it is produced. A database in a worker thread waits while
   * a promise `onRawData` returned is pending (the client is not reading); PGlite in this thread cannot wait.
   */
  execProtocolRawStream(message: Uint8Array, options: StreamCall): Promise<void>
  /** The database writes a call's reply straight to its client's socket when asked (`direct`): one in a worker thread. */
  readonly directReplies?: boolean
  /** The client of the call running now (in a call of units, unit `unit`'s) is gone: the rest of a reply written straight to it goes nowhere. */
  abandonDirectReply?(unit?: number): void
  /**
   * Stop the call running now as Postgres stops a statement for a CancelRequest (57014); resolves false or '' if none
   * ran. In a call of units, unit `unit`'s statement; one not begun is not run ('skipped': the server answers it).
   * Only a database in a worker thread can be stopped: PGlite in the server's thread holds that thread while it runs.
   */
  cancel?(unit?: number): Promise<boolean | 'canceled' | 'skipped' | ''>
  /** Take the socket lent to the running call back, before its thread began to read it (engine/lent-reads.ts). */
  reclaimLend?(): boolean
  /**
   * Several clients' units (each a Query, or messages ending in Sync) in one call, each run as a call of its own, the
   * output to `onRawData` in order with `onUnitEnd` after each unit's (`skipped`: stopped before it began, not run);
   * a unit that leaves the session open or changed ends the call early. Only a database in a worker thread has it:
   * what it saves is the crossing between threads.
   */
  execProtocolUnits?(
    units: readonly Uint8Array[],
    options: { onRawData: OutputSink; onUnitEnd: (skipped: boolean) => void; direct?: UnitsDirect | null },
  ): Promise<void>
  /** In the call of units running now, unit `unit` is not run if it has not begun (the server answers its client). */
  skipUnit?(unit: number): Promise<boolean>
  /**
   * One unit more for the call of units running now, to run after its others (its index the next one), its reply to
   * `target` (null: through the call's output); false if the call takes no more.
   */
  addUnit?(unit: Uint8Array, target: { fd: number; relayFrom: number } | null): boolean
  /** A client's bytes arrived: a sleeping database thread may wake now, ahead of the call they likely make. */
  prewake?(): void
}

/** How a call's output is streamed (SessionDb.execProtocolRawStream). */
export interface StreamCall {
  onRawData: OutputSink
  syncToFs?: boolean
  /** The reply goes straight to the client's socket (a database in a worker thread). */
  direct?: DirectReply | null
  /** The output is a client's reply: PGlite's repeated reports are left out of it (protocol/repeated-reports.ts). */
  clientReply?: boolean
}

/** The messages the server rewrites, so must read itself (DirectReply.relayFrom). */
export const RelayFrom = { ErrorResponse: 1, NoticeResponse: 2, NotificationResponse: 4 } as const

/**
 * A call whose reply the database's thread writes straight to the client's socket, up to the first message the server
 * must read itself (a RelayFrom bit names it), from which on the output reaches the call's sink as usual. The server
 * keeps the socket open, and writes nothing to it, until the call ends.
 */
export interface DirectReply {
  /** The client's socket. */
  fd: number
  /** RelayFrom bits. */
  relayFrom: number
  /** What the part written to the client said (ReplyReader.absorb), before any output that follows to the sink. */
  summary(summary: Uint8Array): void
  /** The client stopped reading while the thread waits to write the reply (true), or read again (false). */
  blocked(isBlocked: boolean): void
  /**
   * The socket took nothing for a while: the rest of the part written straight to the client comes to raw() instead,
   * unread, beginning where `framing` says in its messages (body bytes left, Int32 LE; header bytes already sent).
   */
  diverted(framing: Uint8Array): void
  /** Those bytes, in order; a returned promise holds the rest back until it settles. */
  raw(bytes: Uint8Array): void | Promise<void>
  /** Nobody waits for this call's end (no batch of the client's, no other holder): it need not wake the server. */
  mayEndLazily(): boolean
  /**
   * Non-null: after this call the database's thread reads the client's socket itself for a while (engine/lent-reads.ts),
   * running Binds of named statements (their names given `prefix`; null: none) and (`unnamed`) units of the unnamed
   * statement. The socket comes back when the call ends.
   */
  lend: LendOffer | null
  /** What the thread tells of the lent socket, in order, as it ends (LentSocket says what `bytes` are). */
  handBack(kind: number, bytes: Buffer): void
}

/** What the thread that reads a lent socket may run (DirectReply.lend). */
export interface LendOffer {
  prefix: Buffer | null
  unnamed: boolean
  /**
   * Other clients want the session (they wait, or send): the thread reads the socket only while the client's
   * transaction block is open (which keeps the session from them anyway), and gives it back once the block ends.
   */
  othersWant: boolean
}

/** What a lent socket's hand-back is (DirectReply.handBack). */
export const LentSocket = {
  /** Bytes the thread read and did not run: the server reads them first. */
  Unread: 0,
  /** How many units it ran (UInt32 LE) and the last of them, as the client sent it. */
  Ran: 1,
  /** The Parse of the unnamed statement it ran last: the client's unnamed statement now. */
  UnnamedParsed: 2,
  /** A Query it ran dropped the unnamed statement. */
  UnnamedDropped: 3,
} as const

/**
 * A call of units whose replies go straight to their clients' sockets: each unit's target (null: through the sink),
 * and `reply`, whose summary() and blocked() stand for the unit that runs when they come.
 */
export interface UnitsDirect {
  targets: ReadonlyArray<{ fd: number; relayFrom: number } | null>
  reply: DirectReply
}

/**
 * Gets each piece of a call's output; a returned promise asks the database to wait before sending more. `owned`: the
 * chunk is the sink's to keep (a database thread's reply); otherwise it is a view the database reuses.
 */
export type OutputSink = (chunk: Uint8Array, owned?: boolean) => void | Promise<void>

/**
 * Where the databases a client names come from. Without one, a server has one database and every name leads there
 * (the stock behaviour). Names are as Postgres folds them; the catalog serializes work on one name.
 */
export interface DatabaseCatalog {
  /** The database clients reach when they name no other, and which cannot be dropped. */
  readonly mainName: string
  /** The instance behind `name`, created (from the migrated template) on first use. */
  open(name: string): Promise<SessionDb>
  /** The open instance behind `name`, if it is open. */
  instance(name: string): SessionDb | null
  /** Whether `name` exists (was used or created, and not dropped). */
  exists(name: string): Promise<boolean>
  /**
   * CREATE DATABASE: false if it exists already. Given `template` (which must exist, and nobody use), a copy of that
   * database, else of the migrated template.
   */
  create(name: string, template?: string | null): Promise<boolean>
  /** DROP DATABASE: closes and deletes it; false if it did not exist. Its clients must be gone already. */
  drop(name: string): Promise<boolean>
  /** Back to the migrated state: the instance to use from now on. The old one is closed by the catalog. */
  reset(name: string): Promise<SessionDb>
  /**
   * CREATE EXTENSION `extension` is about to run in `name`, whose engine may not have the extension's files loaded
   * (PGlite loads them at start): the instance to use from now on, opened again with them, or null when nothing
   * needs doing (not an extension PGlite ships, or loaded already). The caller holds the session at rest.
   */
  loadExtension(name: string, extension: string): Promise<SessionDb | null>
}
