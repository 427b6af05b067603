// The CLI as a user meets it: flags, the one URL line on stdout, --run, migrations at start, and the real bin.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import pg from 'pg'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { parseCliOptions } from '../../src/cli/flags.ts'
import { captureIo } from '../helpers/cli-io.ts'
import { CAN_FETCH_NODE, NODE_VERSIONS, nodeBinDir } from '../helpers/node-versions.ts'
import { scratchRoot } from '../helpers/db.ts'

/** A copy of the initdb'd template: opening it costs ~0.3 s instead of an initdb. */
async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(await scratchRoot(), 'pglite-cli-'))
  await cp(inject('pgliteTemplateDir'), dir, { recursive: true })
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await client.query(sql)
  } finally {
    await client.end()
  }
}

describe('pglite-dev-db CLI', () => {
  it('rejects an unknown flag with a one-line error naming the nearest flag, the usage, and exit 2', async () => {
    const c = captureIo()
    expect(await main(['--prot', '5432'], c.io)).toBe(2)
    expect(c.stdout).toEqual([])
    expect(c.stderr.join('\n')).toMatch(
      /^pglite-dev-db: unknown option '--prot'; did you mean '--port'\?\n\nUsage: pglite-dev-db/,
    )
    const far = captureIo()
    expect(await main(['--frobnicate'], far.io)).toBe(2)
    expect(far.stderr[0]).toMatch(/^pglite-dev-db: unknown option '--frobnicate'\n/)
  })

  it('--version prints the package version alone; -h is --help', async () => {
    const version = captureIo()
    expect(await main(['--version'], version.io)).toBe(0)
    const { version: expected } = JSON.parse(
      await readFile(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string }
    expect(version.stdout).toEqual([expected])
    const short = captureIo()
    expect(await main(['-h'], short.io)).toBe(0)
    expect(short.stdout[0]).toMatch(/^Usage: pglite-dev-db/)
    expect(short.stdout[0]).toContain('-h, --help')
  })

  it('says which migrations folder it applies and where that came from', async () => {
    const c = captureIo()
    const exit = main(['--port', '0', '--memory', '--log-level', 'info'], c.io)
    await c.firstLine
    c.stop()
    expect(await exit).toBe(0)
    // This repo's drizzle.config.ts sets out: './migrations'.
    expect(c.stderr.find((line) => line.includes('applying migrations'))).toMatch(
      /dir=\.\/migrations from="?out in drizzle\.config\.ts/,
    )
  })

  it.each([
    [['--port', 'abc'], "option '--port' must be a whole number, got 'abc'"],
    [['--port'], "option '--port' needs a value (PORT)"],
    [['--memory', '--data-dir', 'x'], "options '--memory' and '--data-dir' exclude each other"],
    [['--log-level', 'loud'], "option '--log-level' must be"],
    [['--no-tls', '--tls-cert', 'c.pem'], "options '--no-tls' and '--tls-cert' exclude each other"],
    [['--tls-cert', 'c.pem'], "option '--tls-cert' needs the key too"],
  ])('rejects %j with exit 2', async (argv, message) => {
    const c = captureIo()
    expect(await main(argv, c.io)).toBe(2)
    expect(c.stderr[0]).toContain(message)
  })

  it('reads environment twins, and flags win over them', async () => {
    const c = captureIo({ PGLITE_DEV_DB_PORT: 'nope' })
    expect(await main([], c.io)).toBe(2)
    expect(c.stderr[0]).toContain("'--port' must be a whole number, got 'nope'")
    const d = captureIo({ PGLITE_DEV_DB_LOG_LEVEL: 'loud' })
    expect(await main(['--help'], d.io)).toBe(2)

    const env = { PGLITE_DEV_DB_PORT: '7000', PGLITE_DEV_DB_MEMORY: '1', PGLITE_DEV_DB_NO_MIGRATIONS: 'true' }
    const fromEnv = parseCliOptions([], env, 'migrations').devDb
    expect([fromEnv.port, fromEnv.dataDir, fromEnv.migrations]).toEqual([7000, undefined, false])
    // A flag beats its own twin and the twin of its opposite.
    const fromFlags = parseCliOptions(
      ['--port', '0', '--data-dir', 'here', '--migrations', 'm'],
      env,
      'migrations',
    ).devDb
    expect([fromFlags.port, fromFlags.dataDir, fromFlags.migrations]).toEqual([0, 'here', 'm'])
    expect(() => parseCliOptions(['--memory', '--data-dir', 'here'], {}, null)).toThrow(
      "'--memory' and '--data-dir' exclude each other",
    )
  })

  it('prints the help on stdout with every flag and its environment twin convention', async () => {
    const c = captureIo()
    expect(await main(['--help'], c.io)).toBe(0)
    const help = c.stdout.join('\n')
    for (const flag of [
      '--host',
      '--port',
      '--data-dir',
      '--memory',
      '--migrations',
      '--max-connections',
      '--idle-in-transaction-timeout-ms',
      '--idle-timeout-ms',
      '--log-level',
      '--run',
    ]) {
      expect(help).toContain(flag)
    }
    expect(help).toContain('PGLITE_DEV_DB_')
  })

  it('--port 0 prints exactly one line, the URL, serves the migrated schema, and stops cleanly on a signal', async () => {
    const dir = await dataDir()
    const c = captureIo()
    const exit = main(['--port', '0', '--data-dir', dir, '--migrations', 'migrations', '--log-level', 'info'], c.io)
    const url = await c.firstLine
    expect(url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/)
    const tables = await query(
      url,
      "select table_name from information_schema.tables where table_schema = 'public' order by 1",
    )
    expect(tables.rows.map((r) => r.table_name)).toEqual(['customers', 'order_items', 'orders', 'products'])
    await query(url, "insert into customers (email, name) values ('a@example.com', 'A')")
    c.stop()
    expect(await exit).toBe(0)
    expect(c.stdout).toEqual([url])
    expect(c.stderr.some((l) => l.includes('migration applied'))).toBe(true)

    // Same data dir again: the row is still there and no migration runs twice.
    const again = captureIo()
    const exit2 = main(
      ['--port', '0', '--data-dir', dir, '--migrations', 'migrations', '--log-level', 'info'],
      again.io,
    )
    const url2 = await again.firstLine
    expect((await query(url2, 'select email from customers')).rows).toEqual([{ email: 'a@example.com' }])
    again.stop()
    expect(await exit2).toBe(0)
    expect(again.stderr.some((l) => l.includes('migration applied'))).toBe(false)
    expect(again.stderr.some((l) => l.includes('applied=0'))).toBe(true)
  })

  it('listening beyond loopback without --password warns; with --password it does not, and the URL carries the password', async () => {
    const open = captureIo()
    const exitOpen = main(
      ['--host', '0.0.0.0', '--port', '0', '--memory', '--no-migrations', '--log-level', 'warn'],
      open.io,
    )
    const openUrl = await open.firstLine
    expect((await query(openUrl, 'select 1 as n')).rows).toEqual([{ n: 1 }])
    open.stop()
    expect(await exitOpen).toBe(0)
    expect(open.stderr.filter((l) => l.includes('without a password'))).toHaveLength(1)

    const guarded = captureIo()
    const exitGuarded = main(
      [
        '--host',
        '0.0.0.0',
        '--port',
        '0',
        '--memory',
        '--no-migrations',
        '--log-level',
        'warn',
        '--password',
        'p@ss:w/rd',
      ],
      guarded.io,
    )
    const url = await guarded.firstLine
    expect(url).toMatch(/^postgres:\/\/postgres:p%40ss%3Aw%2Frd@127\.0\.0\.1:\d+\/postgres$/)
    expect((await query(url, 'select 2 as n')).rows).toEqual([{ n: 2 }])
    await expect(query(url.replace('p%40ss%3Aw%2Frd', 'wrong'), 'select 3')).rejects.toMatchObject({ code: '28P01' })
    guarded.stop()
    expect(await exitGuarded).toBe(0)
    expect(guarded.stderr.filter((l) => l.includes('without a password'))).toEqual([])
  })

  it('--run starts, runs the command with DATABASE_URL, stops, and exits with its status', async () => {
    const dir = await dataDir()
    const c = captureIo(process.env)
    const status = await main(
      [
        '--port',
        '0',
        '--data-dir',
        dir,
        '--no-migrations',
        '--log-level',
        'warn',
        '--run',
        `psql "$DATABASE_URL" -Atc 'select 40 + 2' | grep -qx 42 && exit 7`,
      ],
      c.io,
    )
    expect(status).toBe(7)
    expect(c.stdout).toHaveLength(1)
  })

  it('a failing migration exits 1 naming the file on stderr, after the URL line (the port listened first)', async () => {
    const dir = await dataDir()
    const migrations = await mkdtemp(path.join(await scratchRoot(), 'bad-migrations-'))
    onTestFinished(() => rm(migrations, { recursive: true, force: true }))
    await mkdir(path.join(migrations, 'meta'))
    await writeFile(
      path.join(migrations, '0000_broken.sql'),
      'create table ok_table (id int);\n--> statement-breakpoint\nselect * from no_such_table;',
    )
    await writeFile(
      path.join(migrations, 'meta', '_journal.json'),
      JSON.stringify({
        version: '7',
        dialect: 'postgresql',
        entries: [{ idx: 0, version: '7', when: 1700000000000, tag: '0000_broken', breakpoints: true }],
      }),
    )
    const c = captureIo()
    expect(
      await main(['--port', '0', '--data-dir', dir, '--migrations', migrations, '--log-level', 'silent'], c.io),
    ).toBe(1)
    expect(c.stdout).toEqual([expect.stringMatching(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/)])
    expect(c.stderr.join('\n')).toMatch(/0000_broken\.sql.*no_such_table/)
  })

  it('the bin prints only the URL on stdout and exits 0 on SIGTERM', async () => {
    const dir = await dataDir()
    const child = spawn(
      process.execPath,
      ['bin/pglite-dev-db.js', '--port', '0', '--data-dir', dir, '--no-migrations'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    const lines: string[] = []
    const stdout = createInterface({ input: child.stdout })
    stdout.on('line', (line) => lines.push(line))
    const [url] = (await once(stdout, 'line')) as [string]
    expect((await query(url, 'select 1 as one')).rows).toEqual([{ one: 1 }])
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const [code] = (await exited) as [number]
    expect(code).toBe(0)
    expect(lines).toEqual([url])
  })

  it('the bin runs every database in a worker thread, from its bundle', async () => {
    const child = spawn(process.execPath, ['bin/pglite-dev-db.js', '--port', '0', '--memory'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    const stderr: string[] = []
    createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line))
    const [url] = (await once(createInterface({ input: child.stdout }), 'line')) as [string]
    for (const name of ['first', 'second', 'third']) {
      const other = url.replace(/\/postgres$/, `/${name}`)
      expect((await query(other, 'select count(*)::int as n from customers')).rows).toEqual([{ n: 0 }])
    }
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    expect((await exited)[0]).toBe(0)
    const created = stderr.filter((line) => line.includes('database created'))
    expect(stderr.filter((line) => line.includes('running it through tsx'))).toEqual([])
    expect(created.map((line) => [/database=(\w+)/.exec(line)?.[1], line.includes('thread=true')])).toEqual([
      ['first', true],
      ['second', true],
      ['third', true],
    ])
  })

  // V8 prints each WASM function it compiles, and with which compiler, when asked (its output goes to stdout). Each
  // Node's V8 reads its flags differently once running: the flag is tried on every version users run.
  it.each(
    (CAN_FETCH_NODE ? NODE_VERSIONS : [process.versions.node]).flatMap((version) => [
      [version, '', 'optimizes the WASM functions of Postgres that get hot'],
      [version, '--no-wasm-optimizer', 'never optimizes them'],
    ]),
  )('on Node %s, the bin %s %s', async (version, flag) => {
    const node = version === process.versions.node ? process.execPath : path.join(await nodeBinDir(version), 'node')
    const child = spawn(
      node,
      ['--trace-wasm-compilation-times', 'bin/pglite-dev-db.js', '--port', '0', '--memory', ...(flag ? [flag] : [])],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    )
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    const stdout: string[] = []
    const lines = createInterface({ input: child.stdout })
    const url = new Promise<string>((resolve) =>
      lines.on('line', (line) => {
        stdout.push(line)
        if (line.startsWith('postgres://')) resolve(line)
      }),
    )
    const heavy = 'select count(*)::int as n from generate_series(1, 300000)'
    for (let i = 0; i < 3; i++) expect((await query(await url, heavy)).rows).toEqual([{ n: 300000 }])
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    expect((await exited)[0]).toBe(0)
    const compiled = (compiler: string) => stdout.filter((line) => line.includes(`using ${compiler}`)).length
    expect(compiled('Liftoff')).toBeGreaterThan(100)
    if (flag) expect(compiled('TurboFan')).toBe(0)
    else expect(compiled('TurboFan')).toBeGreaterThan(0)
  })

  // With --no-wasm-optimizer, V8 also waits longer before it optimizes a JavaScript function (`--trace-opt` prints
  // each optimization). Node 24's V8 reads that threshold at its start only: there the flag leaves it as it was.
  it.each((CAN_FETCH_NODE ? NODE_VERSIONS : [process.versions.node]).filter((version) => parseInt(version) < 24))(
    'on Node %s, the bin --no-wasm-optimizer optimizes fewer JavaScript functions for the same queries',
    async (version) => {
      const node = version === process.versions.node ? process.execPath : path.join(await nodeBinDir(version), 'node')
      const optimized: Record<string, number> = {}
      for (const flags of [[], ['--no-wasm-optimizer']]) {
        const child = spawn(node, ['--trace-opt', 'bin/pglite-dev-db.js', '--port', '0', '--memory', ...flags], {
          stdio: ['ignore', 'pipe', 'ignore'],
        })
        onTestFinished(() => {
          if (child.exitCode === null) child.kill('SIGKILL')
        })
        let count = 0
        const lines = createInterface({ input: child.stdout })
        const url = new Promise<string>((resolve) =>
          lines.on('line', (line) => {
            if (line.startsWith('postgres://')) resolve(line)
            else if (line.includes('completed compiling') && line.includes('TURBOFAN')) count++
          }),
        )
        const client = new pg.Client({ connectionString: await url })
        await client.connect()
        for (let i = 0; i < 2000; i++) expect((await client.query('select $1::int as n', [i])).rows).toEqual([{ n: i }])
        await client.end()
        const exited = once(child, 'exit')
        child.kill('SIGTERM')
        expect((await exited)[0]).toBe(0)
        optimized[flags.join(' ') || 'default'] = count
      }
      // Printed for a failure's replay: how many each start optimized.
      expect(optimized['--no-wasm-optimizer'], JSON.stringify(optimized)).toBeLessThan(optimized['default']! * 0.8)
    },
  )

  it('a second server on a data dir in use exits 1 naming the first; once that one is killed -9, the next start takes over', async () => {
    const dir = await dataDir()
    const child = spawn(
      process.execPath,
      ['bin/pglite-dev-db.js', '--port', '0', '--data-dir', dir, '--no-migrations'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    const [url] = (await once(createInterface({ input: child.stdout }), 'line')) as [string]
    await query(url, 'create table kept (id int); insert into kept values (1)')

    const second = captureIo()
    expect(await main(['--port', '0', '--data-dir', dir, '--no-migrations', '--log-level', 'silent'], second.io)).toBe(
      1,
    )
    expect(second.stdout).toEqual([])
    expect(second.stderr.join('\n')).toContain(`in use by another pglite-dev-db (pid ${child.pid}`)

    // kill -9 leaves the lock file behind; its pid is gone, so the next server takes the directory.
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
    const third = captureIo()
    const running = main(['--port', '0', '--data-dir', dir, '--no-migrations', '--log-level', 'silent'], third.io)
    const thirdUrl = await third.firstLine
    expect((await query(thirdUrl, 'select count(*)::int as n from kept')).rows).toEqual([{ n: 1 }])
    third.stop()
    expect(await running).toBe(0)
  })
})
