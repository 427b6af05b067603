// A message other than COPY data inside COPY FROM STDIN (Query, Parse, Terminate between two CopyData): Postgres
// answers 08P01 to that client and aborts the COPY; every other client must go on as before.
import { connectClient, errorsIn, isDisconnect, timedQuery, type Reply } from './clients.ts'
import type { Measured, Scenario } from './scenario.ts'
import { ClosedError, StalledError, type RawClient } from '../raw-client.ts'
import * as wire from '../wire.ts'
import { endQuietly, type Target } from './targets.ts'

const TABLE = 'limits_copy'
const OFFENDERS = {
  query: { what: 'a Query', frame: () => wire.query('select 1') },
  parse: { what: 'a Parse', frame: () => wire.parse('', 'select 1') },
  terminate: { what: 'a Terminate', frame: () => wire.terminate() },
} as const
type Offender = keyof typeof OFFENDERS

/** Sends one frame; a connection the server already closed is part of the outcome. */
async function sendQuietly(client: RawClient, frame: Buffer): Promise<boolean> {
  if (client.isClosed) return false
  try {
    await client.send(frame)
    return true
  } catch (error) {
    if (isDisconnect(error)) return false
    throw error
  }
}

/** How the server answered: ReadyForQuery (the client goes on), a close, or nothing within 5 s. */
async function answer(client: RawClient): Promise<'ReadyForQuery' | 'closed' | 'no answer'> {
  try {
    await client.until('ReadyForQuery', { deadlineMs: 5_000 })
    return 'ReadyForQuery'
  } catch (error) {
    if (error instanceof ClosedError || isDisconnect(error)) return 'closed'
    if (error instanceof StalledError) return 'no answer'
    throw error
  }
}

async function offend(target: Target, offender: Offender): Promise<Measured> {
  const copier = await connectClient(target.url)
  const observer = await connectClient(target.url)
  try {
    await copier.send(wire.query(`copy ${TABLE} from stdin`))
    await copier.next('CopyInResponse')
    // One write per message, so the offender arrives on its own while the COPY is open. The rest of the COPY follows
    // only if the server has not answered: data sent to a server that closes the connection can make it reset the
    // connection, and the client would lose the error it was sent.
    await sendQuietly(copier, wire.copyData('1\n'))
    await sendQuietly(copier, wire.copyData('2\n'))
    await sendQuietly(copier, OFFENDERS[offender].frame())
    let ending = await answer(copier)
    if (ending === 'no answer') {
      await sendQuietly(copier, wire.copyData('3\n'))
      await sendQuietly(copier, wire.copyDone())
      ending = await answer(copier)
    }
    // A copier the server kept: is it still served? (Postgres keeps it; the COPY data after the error is ignored.)
    const copierAfter: Reply | null =
      copier.isClosed || offender === 'terminate' ? null : await timedQuery(copier, 'select 1', 5_000)
    const errors = errorsIn(copier)
    const count = await timedQuery(observer, `select count(*) from ${TABLE}`, 10_000)
    const rows = count.outcome === 'ok' ? Number(count.rows[0]?.[0]) : null
    const newcomer = await connectClient(target.url)
    const newcomerReply = await timedQuery(newcomer, 'select 1', 10_000)
    await endQuietly(newcomer)
    if (rows) await timedQuery(observer, `truncate ${TABLE}`, 10_000)
    const othersFine = count.outcome === 'ok' && newcomerReply.outcome === 'ok' && target.isAlive()
    const copierText =
      ending === 'closed'
        ? 'then closed'
        : copierAfter
          ? `client goes on (select 1: ${copierAfter.outcome})`
          : `then ${ending}`
    return {
      text: `${errors.join(', ') || 'no error'}, ${copierText}; ${rows ?? '?'} rows landed; others ${othersFine ? 'served' : 'NOT served'}`,
      met: errors.some((e) => e.endsWith(' 08P01')) && rows === 0 && othersFine,
      figures: {
        errors,
        ending,
        copierAfter: copierAfter && { outcome: copierAfter.outcome, errors: copierAfter.errors },
        rowsLanded: rows,
        observer: { outcome: count.outcome, errors: count.errors },
        newClient: { outcome: newcomerReply.outcome, errors: newcomerReply.errors },
        serverAlive: target.isAlive(),
      },
    }
  } finally {
    await Promise.all([copier, observer].map(endQuietly))
  }
}

export const copyScenario: Scenario = {
  id: 'copy',
  lines: (Object.keys(OFFENDERS) as Offender[]).map((offender) => ({
    id: `copy-${offender}`,
    what: `${OFFENDERS[offender].what} sent between CopyData messages of \`COPY ... FROM STDIN\``,
    goal: '08P01 for that client, COPY aborted (0 rows), others served',
  })),
  async run(target) {
    const setup = await connectClient(target.url)
    try {
      await timedQuery(setup, `drop table if exists ${TABLE}; create table ${TABLE} (n int)`, 10_000)
      const lines: Record<string, Measured> = {}
      for (const offender of Object.keys(OFFENDERS) as Offender[])
        lines[`copy-${offender}`] = await offend(target, offender)
      await timedQuery(setup, `drop table if exists ${TABLE}`, 10_000)
      return lines
    } finally {
      await endQuietly(setup)
    }
  },
}
