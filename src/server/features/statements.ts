// A client's prepared statements and portals, kept apart from every other client's in PGlite's one session. Each
// non-empty name the client gives is known to PGlite as the client's prefix plus that name (two clients that both
// Parse "S_1" would otherwise collide, 42P05, or run each other's statement). Here is the one record of them: the
// name PGlite knows each by, what the server must do when one runs (COPY FROM STDIN, CREATE/DROP DATABASE, a reset
// call), the Parse that made each (to make it again after another client wiped them), and the client's own names
// put back into error texts that quote PGlite's.

import { createHash } from 'node:crypto'
import { CODE_LENGTH, FrontendCode, HEADER_LENGTH, LEN_LENGTH } from '../protocol/codes.ts'
import { bindInteger, cstring, encodeClose, encodeQuery } from '../protocol/frontend-messages.ts'
import type { SignalArgument } from './server-functions.ts'
import { forEachFrame } from '../protocol/frames.ts'
import type { Special } from './takeover-kinds.ts'

interface Statement {
  /** The name PGlite knows it by. */
  server: Buffer
  special: Special | null
}

/** Postgres keys prepared statements and portals by NAMEDATALEN - 1 bytes; longer names are cut. */
export const MAX_NAME_BYTES = 63
const QUOTE = 0x22

export class Statements {
  readonly #prefix: Buffer
  /** `"` + prefix, as it appears in a server message that quotes a name. */
  readonly #quotedPrefix: Buffer
  /** The client's named statements, made and not closed, by its name for them. */
  readonly #named = new Map<string, Statement>()
  /** What the unnamed statement is, if special. */
  #unnamedSpecial: Special | null = null
  /** The Parse that made the unnamed statement (see unnamedParse). */
  #unnamedParse: Buffer | null = null
  /** How many named statements are special: while none, a Bind needs no look-up. */
  #specials = 0
  /** Portals bound to a special statement, by the client's name for them. */
  readonly #portals = new Map<string, Special>()
  /** The (rewritten) Parse of each named statement PGlite has run, by client name: to make them again after a wipe. */
  readonly #parses = new Map<string, Buffer>()
  /**
   * Parse messages rewritten but not yet run by PGlite (waiting for the session), by server name. A wipe meanwhile
   * (another client's reset or DEALLOCATE ALL) must not make them: they make themselves when they run (else 42P05).
   */
  readonly #unrun = new Map<string, { name: string; frame: Buffer }>()
  /** Names too long to prefix are hashed; the hash maps back to the client's name in error texts. */
  readonly #hashed = new Map<string, string>()
  /** Statements that call functions answering per backend: their ServerFunctions bits, by client name ('' unnamed). */
  readonly #functions = new Map<string, number>()
  /** Statements that cancel or end another client (pg_cancel_backend, pg_terminate_backend), by client name. */
  readonly #signals = new Map<string, readonly SignalArgument[]>()
  /** Cursors the client declared WITH HOLD and has not closed (they outlive its transaction), by its name for them. */
  readonly #heldCursors = new Map<string, Buffer>()
  /** Statements whose remaking failed, by client name (see remakeFailed). */
  readonly #unmade = new Set<string>()
  /** Set once the client used any name: from then on its errors are checked for prefixed names. */
  used = false

  constructor(namespaceId: number) {
    this.#prefix = Buffer.from(`pgdd${namespaceId.toString(36)}.`)
    this.#quotedPrefix = Buffer.concat([Buffer.from([QUOTE]), this.#prefix])
  }

  /** The name PGlite knows for the client's `name` (bytes without the terminator, not empty). */
  serverName(name: Buffer): Buffer {
    this.used = true
    if (this.#prefix.length + name.length <= MAX_NAME_BYTES) return Buffer.concat([this.#prefix, name])
    const digest = createHash('sha256')
      .update(name)
      .digest('base64url')
      .slice(0, MAX_NAME_BYTES - this.#prefix.length - 1)
    const server = Buffer.from(`${this.#prefix.toString()}#${digest}`)
    this.#hashed.set(server.toString(), name.toString())
    return server
  }

  /** What each of the client's statement names begins with, as PGlite knows it. */
  get prefix(): Buffer {
    return this.#prefix
  }

  /** Named statements the client has now. */
  get count(): number {
    return this.#named.size
  }

  has(name: string): boolean {
    return this.#named.has(name)
  }

  /**
   * Parse: the client makes statement `name` ('' for the unnamed one), `frame` being the Parse as PGlite will get it.
   * For a named one, `server` is PGlite's name for it, and the frame is kept to make the statement again once PGlite
   * has run it; the unnamed one's, to make it again when the session's unnamed statement is no longer this client's.
   */
  parsed(name: string, special: Special | null, server: Buffer | null, frame: Buffer): void {
    if (name === '') {
      this.#unnamedSpecial = special
      this.#unnamedParse = frame
      return
    }
    this.#forget(name)
    this.#named.set(name, { server: server!, special })
    if (special) this.#specials++
    this.#unrun.set(server!.toString(), { name, frame })
  }

  /** SQL PREPARE name: made by PGlite, but never made again (the server does not keep SQL it cannot replay alone). */
  prepared(name: string, server: Buffer): void {
    this.#forget(name)
    this.#named.set(name, { server, special: null })
  }

  /** Close of a statement ('' the unnamed one, which a simple Query drops too), or SQL DEALLOCATE name. */
  closed(name: string): void {
    if (name === '') this.#unnamedSpecial = this.#unnamedParse = null
    else this.#forget(name)
    if (this.#signals.size > 0) this.#signals.delete(name)
  }

  /** Bind: `portal` now runs `statement`; what the portal is, if special. */
  bound(portal: string, statement: string): Special | null {
    const special =
      statement === ''
        ? this.#unnamedSpecial
        : this.#specials > 0
          ? (this.#named.get(statement)?.special ?? null)
          : null
    if (special) this.#portals.set(portal, special)
    else if (this.#portals.size > 0) this.#portals.delete(portal)
    return special
  }

  /** Execute of `portal`: what it runs, if special. A database command's or a DISCARD's portal runs once. */
  executes(portal: string): Special | null {
    if (this.#portals.size === 0) return null
    const special = this.#portals.get(portal) ?? null
    if (special?.kind === 'database' || special?.kind === 'discard') this.#portals.delete(portal)
    return special
  }

  /** Close of a portal. */
  closedPortal(portal: string): void {
    if (this.#portals.size > 0) this.#portals.delete(portal)
  }

  /** The Parse (as PGlite gets it) of the client's unnamed statement, while its own backend would still have it. */
  get unnamedParse(): Buffer | null {
    return this.#unnamedParse
  }

  /** The Parse (as PGlite gets it) that made the client's statement `name` ('' unnamed); null if none made it. */
  parseOf(name: string): Buffer | null {
    if (name === '') return this.#unnamedParse
    const statement = this.#named.get(name)
    return (statement && (this.#parses.get(name) ?? this.#unrun.get(statement.server.toString())?.frame)) ?? null
  }

  /**
   * Parse of statement `name` ('' unnamed): the ServerFunctions bits of what it calls (0: none), and the pids it
   * signals (see signalsOf).
   */
  callsFunctions(name: string, bits: number, signals: readonly SignalArgument[] = []): void {
    if (bits !== 0) this.#functions.set(name, bits)
    else if (this.#functions.size > 0) this.#functions.delete(name)
    if (signals.length > 0) this.#signals.set(name, signals)
    else if (this.#signals.size > 0) this.#signals.delete(name)
  }

  /**
   * Bind of statement `name`: the clients its pg_cancel_backend and pg_terminate_backend calls signal, each pid as the
   * text has it or as the Bind gives the parameter (`from`: where its parameter format codes begin).
   */
  signalsOf(
    name: string,
    bytes: Buffer,
    from: number,
    end: number,
  ): Array<{ op: 'cancel' | 'terminate'; pid: number }> {
    const signals = this.#signals.size === 0 ? undefined : this.#signals.get(name)
    if (!signals) return []
    const pids: Array<{ op: 'cancel' | 'terminate'; pid: number }> = []
    for (const signal of signals) {
      const pid = 'pid' in signal ? signal.pid : bindInteger(bytes, from, end, signal.param - 1)
      if (pid !== null) pids.push({ op: signal.op, pid })
    }
    return pids
  }

  /** Whether any statement of the client calls functions that answer per backend (else functionsOf is 0 for all). */
  get callsAnyFunctions(): boolean {
    return this.#functions.size > 0
  }

  /** Bind of statement `name`: the ServerFunctions bits of what it calls. */
  functionsOf(name: string): number {
    return this.#functions.get(name) ?? 0
  }

  /** DECLARE name ... WITH HOLD: the name PGlite knows the cursor by, which outlives the client's transaction. */
  declaredHeldCursor(name: string): Buffer {
    const server = this.serverName(Buffer.from(name))
    this.#heldCursors.set(name, server)
    return server
  }

  /** Whether the client has cursors declared WITH HOLD: only then do its cursor names need reading. */
  get holdsCursors(): boolean {
    return this.#heldCursors.size > 0
  }

  /** The name PGlite knows the client's portal or cursor `name` by: its own, unless it is one declared WITH HOLD. */
  portalName(name: Buffer): Buffer | null {
    return this.#heldCursors.size === 0 ? null : (this.#heldCursors.get(name.toString()) ?? null)
  }

  readonly isHeldCursor = (name: string): boolean => this.#heldCursors.has(name)

  /** CLOSE name, or a Close of a portal: a cursor declared WITH HOLD is gone. */
  closedCursor(name: string): void {
    this.#heldCursors.delete(name)
  }

  /**
   * What PGlite runs in place of CLOSE ALL in a simple Query (see ownNamesDo). What the client holds is known once it
   * ran (keepExisting): the Query may fail before it, or DECLARE after it.
   */
  closeAllCursors(): string {
    return ownNamesDo('CLOSE', 'pg_cursors', this.#prefix.toString())
  }

  /** What PGlite runs in place of DEALLOCATE ALL among other statements of a simple Query; see closeAllCursors. */
  deallocateAll(): string {
    return ownNamesDo('DEALLOCATE', 'pg_prepared_statements', this.#prefix.toString())
  }

  /** A Query listing this client's cursors ('c') and statements ('s') that PGlite has, by the names PGlite knows. */
  ownNamesQuery(): Buffer {
    const own = `'${this.#prefix.toString().replaceAll("'", "''")}'`
    return encodeQuery(
      `SELECT 'c', name FROM pg_catalog.pg_cursors WHERE pg_catalog.starts_with(name, ${own}) ` +
        `UNION ALL SELECT 's', name FROM pg_catalog.pg_prepared_statements WHERE pg_catalog.starts_with(name, ${own})`,
    )
  }

  /** After a CLOSE ALL or DEALLOCATE ALL stand-in: forget the cursors and statements PGlite no longer has (ownNamesQuery's rows). */
  keepExisting(rows: ReadonlyArray<ReadonlyArray<string | null>>): void {
    const has = new Set(rows.map(([kind, name]) => `${kind}${name}`))
    for (const [name, server] of this.#heldCursors)
      if (!has.has(`c${server.toString()}`)) this.#heldCursors.delete(name)
    for (const [name, statement] of this.#named) {
      if (has.has(`s${statement.server.toString()}`)) continue
      this.#forget(name)
      this.#unmade.delete(name)
    }
  }

  /** Whether any portal is special: while none, an Execute needs no look-up. */
  get hasSpecialPortals(): boolean {
    return this.#portals.size > 0
  }

  /** A Bind of any of the client's statements needs nothing of the server: none is special or calls functions. */
  get needNothingToRun(): boolean {
    return (
      this.#specials === 0 && this.#unnamedSpecial === null && this.#portals.size === 0 && this.#functions.size === 0
    )
  }

  /** Whether any statement is special: while none, a Bind needs no look-up. */
  get hasSpecialStatements(): boolean {
    return this.#specials > 0 || this.#unnamedSpecial !== null
  }

  /** The client's portals are gone (its pipeline failed, which ends the transaction that held them). */
  portalsEnded(): void {
    this.#portals.clear()
  }

  #forget(name: string): void {
    if (this.#functions.size > 0) this.#functions.delete(name)
    const statement = this.#named.get(name)
    if (!statement) return
    this.#named.delete(name)
    if (statement.special) this.#specials--
    this.#parses.delete(name)
    if (this.#unrun.size > 0) this.#unrun.delete(statement.server.toString())
  }

  /** PGlite ran `input` (rewritten by this client): the statements its Parse messages made are now made. */
  ran(input: Uint8Array): void {
    if (this.#unrun.size === 0) return
    const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
    forEachFrame(bytes, (code, offset, length) => {
      if (code !== FrontendCode.Parse) return
      const [start, end] = cstring(bytes, offset + HEADER_LENGTH, offset + length)
      if (end === start) return
      const server = bytes.toString('utf8', start, end)
      const unrun = this.#unrun.get(server)
      if (!unrun) return
      this.#unrun.delete(server)
      this.#parses.set(unrun.name, unrun.frame)
    })
  }

  /** This client's statements were deallocated (its DEALLOCATE ALL or DISCARD ALL ran in PGlite). */
  forgetAll(): void {
    this.#named.clear()
    this.#specials = 0
    this.#parses.clear()
    this.#unrun.clear()
  }

  /** Parse messages that make this client's statements again (those PGlite has run), after a wipe or a reset. */
  parseFrames(): Buffer[] {
    return [...this.#parses.values()]
  }

  /**
   * Those of `frames` (from parseFrames) failed to make their statement again (a table it reads did not exist at
   * that moment, after a reset): they are tried again when the client next takes the session, as Postgres plans a
   * statement again once its table is back.
   */
  remakeFailed(frames: readonly Buffer[]): void {
    for (const [name, frame] of this.#parses) if (frames.includes(frame)) this.#unmade.add(name)
  }

  /** Some statements' remaking failed: they are made again when the client next takes the session. */
  get hasUnmade(): boolean {
    return this.#unmade.size > 0
  }

  /** Parse messages of the statements whose remaking failed, forgotten as such. */
  takeUnmade(): Buffer[] {
    if (this.#unmade.size === 0) return []
    const frames = [...this.#unmade].map((name) => this.#parses.get(name)).filter((frame) => frame !== undefined)
    this.#unmade.clear()
    return frames
  }

  /** Close messages for every statement this client still has, which it forgets (DEALLOCATE ALL). */
  closeStatements(): Buffer[] {
    const frames = [...this.#named.values()].map((statement) => encodeClose('S', statement.server))
    this.forgetAll()
    return frames
  }

  /** Close messages for every statement and held cursor this client still has, which it forgets: when it goes away, DISCARD ALL. */
  closeAll(): Buffer[] {
    const frames = this.closeStatements()
    for (const server of this.#heldCursors.values()) frames.push(encodeClose('P', server))
    this.#heldCursors.clear()
    return frames
  }

  /** An ErrorResponse or NoticeResponse with this client's prefixed names turned back into its own names. */
  restore(message: Buffer): Buffer {
    if (message.indexOf(this.#quotedPrefix) < 0) return message
    const prefix = this.#prefix.toString()
    const text = message.toString('utf8', HEADER_LENGTH).replace(/"([^"\0]*)"/g, (quoted, name: string) => {
      if (!name.startsWith(prefix)) return quoted
      return `"${this.#hashed.get(name) ?? name.slice(prefix.length)}"`
    })
    const body = Buffer.from(text, 'utf8')
    const out = Buffer.allocUnsafe(HEADER_LENGTH + body.length)
    out[0] = message[0]!
    out.writeInt32BE(LEN_LENGTH + body.length, CODE_LENGTH)
    body.copy(out, HEADER_LENGTH)
    return out
  }
}

/**
 * What stands in for one client's CLOSE ALL or DEALLOCATE ALL in a simple Query (features/discard.ts rewriteStandIns):
 * a DO block that runs `command` on every name in `view` but the other clients' and the server's (pgdd<id>. and
 * pgdd. prefixes other than `ownPrefix`). The names are read before the first is closed.
 */
function ownNamesDo(
  command: 'CLOSE' | 'DEALLOCATE',
  view: 'pg_cursors' | 'pg_prepared_statements',
  ownPrefix: string,
): string {
  return (
    `DO $pgdd$DECLARE n text; BEGIN FOREACH n IN ARRAY coalesce((SELECT pg_catalog.array_agg(name) FROM pg_catalog.${view} ` +
    `WHERE name !~ '^pgdd[0-9a-z]*[.]' OR pg_catalog.starts_with(name, '${ownPrefix.replaceAll("'", "''")}')), '{}') LOOP ` +
    `EXECUTE pg_catalog.format('${command} %I', n); END LOOP; END$pgdd$`
  )
}
