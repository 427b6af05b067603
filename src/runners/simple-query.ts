// One simple query on a fresh connection, without a driver: what the test-runner helpers need to reset a database.
// Startup, Query, ReadyForQuery, Terminate (https://www.postgresql.org/docs/current/protocol-flow.html).

import { connect, type Socket } from 'node:net'

const PROTOCOL_3_0 = 196608
const AUTHENTICATION_OK = 0

/** An ErrorResponse, with its fields as node-postgres names them. */
export class ServerError extends Error {
  readonly code: string
  readonly severity: string
  constructor(fields: Map<string, string>) {
    super(fields.get('M') ?? 'server error')
    this.name = 'ServerError'
    this.code = fields.get('C') ?? ''
    this.severity = fields.get('V') ?? fields.get('S') ?? ''
  }
}

function frame(code: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5)
  header.write(code, 0, 'latin1')
  header.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([header, body])
}

function startupMessage(user: string, database: string): Buffer {
  const params = Buffer.from(`user\0${user}\0database\0${database}\0application_name\0pglite-dev-db reset\0\0`)
  const out = Buffer.alloc(8 + params.length)
  out.writeInt32BE(out.length, 0)
  out.writeInt32BE(PROTOCOL_3_0, 4)
  params.copy(out, 8)
  return out
}

function errorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>()
  for (let at = 0; at < body.length && body[at] !== 0;) {
    const end = body.indexOf(0, at + 1)
    fields.set(String.fromCharCode(body[at]!), body.toString('utf8', at + 1, end))
    at = end + 1
  }
  return fields
}

/**
 * Connect to `url` (postgres://user@host:port/database, no password), run `sql` as one simple Query, and resolve once
 * the server is ready again; an ErrorResponse rejects with a ServerError carrying its SQLSTATE.
 */
export function simpleQuery(url: string, sql: string): Promise<void> {
  const target = new URL(url)
  const database = decodeURIComponent(target.pathname.slice(1)) || 'postgres'
  const user = decodeURIComponent(target.username) || 'postgres'
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port || 5432) })
    let pending: Buffer = Buffer.alloc(0)
    let queried = false
    let failure: Error | null = null
    const fail = (error: Error) => {
      socket.destroy()
      reject(error)
    }
    socket.on('error', fail)
    socket.on('close', () =>
      reject(failure ?? new Error(`the server at ${target.host} closed the connection before the query ended`)),
    )
    socket.on('connect', () => socket.write(startupMessage(user, database)))
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      while (pending.length >= 5 && pending.length >= 1 + pending.readInt32BE(1)) {
        const code = String.fromCharCode(pending[0]!)
        const body = pending.subarray(5, 1 + pending.readInt32BE(1))
        pending = pending.subarray(1 + pending.readInt32BE(1))
        if (code === 'R' && body.readInt32BE(0) !== AUTHENTICATION_OK) {
          return fail(
            new Error(`the server at ${target.host} asks for a password: resetDatabase() logs in without one`),
          )
        }
        if (code === 'E') {
          failure = new ServerError(errorFields(body))
          // A FATAL one ends the connection; an ERROR ends the query, and ReadyForQuery follows.
          if (!queried) return fail(failure)
        }
        if (code !== 'Z') continue
        if (!queried) {
          queried = true
          socket.write(frame('Q', Buffer.from(`${sql}\0`)))
          continue
        }
        socket.end(frame('X', Buffer.alloc(0)))
        if (failure) reject(failure)
        else resolve()
      }
    })
  })
}
