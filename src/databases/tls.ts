// The certificate the server offers to clients that ask for TLS (sslmode=require): the user's, from --tls-cert and
// --tls-key, or a self-signed one for localhost made once and kept in the cache dir. Clients that verify certificates
// (sslmode=verify-full) need the user's own; require, prefer and the drivers' `ssl: { rejectUnauthorized: false }` do not.

import { X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { DevServerError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { TlsOptions } from '../server/options.ts'

/** A kept certificate this close to its end is made anew. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000
const VALID_FOR_MS = 825 * 24 * 3600 * 1000
const CERT_FILE = 'localhost.crt'
const KEY_FILE = 'localhost.key'

/** The user's certificate and key (both files, PEM), or ERR_CONFIG naming what is wrong. */
export async function readTlsFiles(certFile: string, keyFile: string): Promise<TlsOptions> {
  const read = (file: string, what: string) =>
    readFile(file, 'utf8').catch((error: unknown) => {
      throw new DevServerError('ERR_CONFIG', `cannot read the TLS ${what} ${file}: ${(error as Error).message}`, {
        cause: error,
      })
    })
  const [cert, key] = await Promise.all([read(certFile, 'certificate'), read(keyFile, 'key')])
  let matches: boolean
  try {
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))
  } catch (error) {
    throw new DevServerError(
      'ERR_CONFIG',
      `${certFile} and ${keyFile} must be a PEM certificate and its unencrypted private key: ${(error as Error).message}`,
      { cause: error },
    )
  }
  if (!matches) throw new DevServerError('ERR_CONFIG', `${keyFile} is not the private key of ${certFile}`)
  return { cert, key }
}

/**
 * A self-signed certificate for localhost, 127.0.0.1 and ::1 (ECDSA P-256): read from `dir` when one is there and
 * valid for a month more, else made (selfsigned, about 20 ms plus loading it) and written there for the next start.
 * A dir that cannot be written only costs the next start the same again.
 */
export async function selfSignedTls(dir: string, log: Logger): Promise<TlsOptions> {
  const kept = await readKept(dir)
  if (kept) return kept
  const { generate } = await import('selfsigned')
  const now = Date.now()
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + VALID_FOR_MS),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  })
  const made = { cert: pems.cert, key: pems.private }
  try {
    await mkdir(dir, { recursive: true })
    // The key first: a cert on disk always has its key beside it.
    await writeWhole(path.join(dir, KEY_FILE), made.key, 0o600)
    await writeWhole(path.join(dir, CERT_FILE), made.cert, 0o644)
    log.debug('made a self-signed TLS certificate', { dir })
  } catch (error) {
    log.debug('cannot keep the TLS certificate; the next start makes another', { dir, error })
  }
  return made
}

async function readKept(dir: string): Promise<TlsOptions | null> {
  let cert: string
  let key: string
  try {
    ;[cert, key] = await Promise.all([
      readFile(path.join(dir, CERT_FILE), 'utf8'),
      readFile(path.join(dir, KEY_FILE), 'utf8'),
    ])
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
  try {
    const x509 = new X509Certificate(cert)
    const fresh = Date.parse(x509.validTo) - Date.now() >= RENEW_BEFORE_MS
    return fresh && x509.checkPrivateKey(createPrivateKey(key)) ? { cert, key } : null
  } catch (error) {
    // Unreadable or not a pair (files edited or half written by hand): made anew.
    if ((error as { code?: string }).code?.startsWith('ERR_')) return null
    throw error
  }
}

async function writeWhole(file: string, text: string, mode: number): Promise<void> {
  const staging = `${file}.${process.pid}.tmp`
  await writeFile(staging, text, { mode })
  await rename(staging, file)
}
