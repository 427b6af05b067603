// What the server reads from SQL text and startup packets, without PGlite: the lexer's statements, the quick keyword
// test, statement names, COPY FROM STDIN, database commands, reset calls, DISCARD ALL, LISTEN, startup settings.
import { describe, expect, it } from 'vitest'
import { Keyword, firstLetter, keywordsIn, statements } from '../../src/server/sql/tokens.ts'
import { statementNameEdits } from '../../src/server/sql/statement-names.ts'
import { parseCopyFromStdin } from '../../src/server/features/copy-in.ts'
import { callsSetConfig } from '../../src/server/features/settings-sql.ts'
import {
  databaseCommandIn,
  parseDatabaseCommand,
  rewriteResetCalls,
} from '../../src/server/features/database-commands.ts'
import { parseDiscard, rewriteStandIns, withDiscardTags, withStandInTags } from '../../src/server/features/discard.ts'
import { DROP_OWN_TEMP_OBJECTS_SQL } from '../../src/server/features/temp-objects.ts'
import { encodeCommandComplete, encodeReadyForQuery } from '../../src/server/protocol/backend-messages.ts'
import { cursorNameEdits } from '../../src/server/sql/cursor-names.ts'
import { createdExtensions } from '../../src/server/sql/extensions.ts'
import { rewriteServerFunctions } from '../../src/server/features/server-functions.ts'
import { listenCommands } from '../../src/server/features/listen.ts'
import { startupSettings } from '../../src/server/features/settings.ts'

const words = (sql: string) => keywordsIn(Buffer.from(sql), 0, Buffer.byteLength(sql))

describe('statements', () => {
  it('splits at top-level semicolons only, folding words and keeping quoted identifiers', () => {
    const sql = 'select \'a;b\', $x$ ; $x$, "Semi;Colon" /* ; /* nested ; */ */ from t -- ;\n; LISTEN Foo;;'
    expect(statements(sql).map((tokens) => tokens.map((t) => t.text))).toEqual([
      ['select', "'", ',', '$', ',', 'Semi;Colon', 'from', 't'],
      ['listen', 'foo'],
    ])
  })
})

describe('callsSetConfig', () => {
  it('finds a call of set_config() anywhere in the text, and not a longer name', () => {
    for (const sql of [
      "select pg_catalog.set_config('a.b', '1', false)",
      'SELECT SET_CONFIG ($1, $2, false)',
      "do $$ begin perform set_config('a.b', '1', false); end $$",
      'select "set_config"(1)',
      'select set_config /* x */ -- y\n (1)',
    ])
      expect(callsSetConfig(sql), sql).toBe(true)
    for (const sql of [
      "select reset_config('x')",
      'select set_config_x(1)',
      'select current_setting($1)',
      'select offset_ from t',
    ])
      expect(callsSetConfig(sql), sql).toBe(false)
  })
})

describe('keywordsIn', () => {
  it('finds each word in any case, and nothing in SQL without them', () => {
    expect(words('COPY t FROM StDiN')).toBe(Keyword.Stdin)
    expect(words('unlisten *; listen x')).toBe(Keyword.Listen)
    expect(words('select pglite_dev_db.reset()')).toBe(Keyword.Pglite)
    expect(words('DROP DATABASE x')).toBe(Keyword.Database)
    for (const sql of ['prepare q as select 1', 'EXECUTE q', 'Deallocate q'])
      expect(words(sql), sql).toBe(Keyword.StatementName)
    expect(words('select * from users where id = $1 order by name')).toBe(0)
    expect(words('prepare a as copy t from stdin')).toBe(Keyword.StatementName | Keyword.Stdin)
    expect(words('DECLARE c CURSOR WITH HOLD FOR select 1')).toBe(Keyword.Declare)
    expect(words('select PG_BACKEND_PID()')).toBe(Keyword.PgName)
    for (const sql of ['create TEMP table t ()', 'CREATE TEMPORARY VIEW v AS select 1', 'create table pg_temp.t ()'])
      expect(words(sql) & Keyword.Temp, sql).toBe(Keyword.Temp)
    expect(words('select my_col from t')).toBe(0)
    expect(words("SELECT Set_Config('work_mem', '8MB', false)")).toBe(Keyword.SetConfig)
  })

  it('looks only inside the bounds it is given', () => {
    const bytes = Buffer.from('listen|select 1|stdin')
    expect(keywordsIn(bytes, 7, 15)).toBe(0)
    expect(keywordsIn(bytes, 0, 6)).toBe(Keyword.Listen)
  })

  it('firstLetter skips white space and folds case', () => {
    expect(firstLetter(Buffer.from(' \n\tDrop'), 0, 7)).toBe(0x64)
    expect(firstLetter(Buffer.from('   '), 0, 3)).toBe(0)
  })
})

describe('statementNameEdits', () => {
  it('names in PREPARE, EXECUTE, DEALLOCATE [PREPARE], EXPLAIN ... EXECUTE and CREATE TABLE ... AS EXECUTE', () => {
    const sql =
      'PREPARE a AS select 1; execute "B"(1); deallocate prepare c; deallocate d; explain (analyze) execute e; create table t as execute f'
    expect(statementNameEdits(sql).map((e) => [e.kind, e.name, sql.slice(e.start, e.end)])).toEqual([
      ['prepare', 'a', 'a'],
      ['execute', 'B', '"B"'],
      ['deallocate', 'c', 'c'],
      ['deallocate', 'd', 'd'],
      ['execute', 'e', 'e'],
      ['execute', 'f', 'f'],
    ])
  })

  it('not two-phase commit, DEALLOCATE ALL, trigger EXECUTE FUNCTION, or words in literals', () => {
    const sql =
      "prepare transaction 'x'; deallocate all; deallocate prepare all; create trigger t after insert on x execute function f(); select 'execute q'"
    expect(statementNameEdits(sql)).toEqual([])
  })
})

describe('parseCopyFromStdin', () => {
  it('reads the table, the column count and the format', () => {
    expect(parseCopyFromStdin('COPY public."My Table" (a, b, c) FROM STDIN WITH (FORMAT csv);')).toEqual({
      table: 'public."My Table"',
      columns: 3,
      binary: false,
    })
    expect(parseCopyFromStdin('copy binary t from stdin')).toEqual({ table: 't', columns: null, binary: true })
    expect(parseCopyFromStdin('copy t from stdin (format binary)')).toMatchObject({ binary: true })
  })

  it('is null for COPY TO, COPY FROM a file, a query, or two statements', () => {
    for (const sql of [
      'copy t to stdout',
      "copy t from '/tmp/x'",
      'copy (select 1) to stdout',
      'copy t from stdin; select 1',
      'select 1',
    ]) {
      expect(parseCopyFromStdin(sql), sql).toBeNull()
    }
  })
})

describe('parseDatabaseCommand', () => {
  it('CREATE DATABASE with any options, DROP DATABASE [IF EXISTS] [WITH (FORCE)]', () => {
    const plain = { template: null, encoding: null, owner: null, tablespace: null, early: null, strategy: null }
    expect(parseDatabaseCommand('CREATE DATABASE "Shop" TEMPLATE template0 ENCODING utf8')).toEqual({
      ...plain,
      kind: 'create',
      name: 'Shop',
      encoding: 'utf8',
      warnings: [],
    })
    expect(
      parseDatabaseCommand('create database w1 with owner = me template = "Graphile_Tpl" connection limit = -1'),
    ).toEqual({ ...plain, kind: 'create', name: 'w1', template: 'Graphile_Tpl', owner: 'me', warnings: [] })
    const encodings: Array<[string, string | null]> = [
      ["encoding = 'UTF-8'", 'UTF-8'],
      ["encoding 'it''s'", "it's"],
      ['encoding 6', '6'],
      ['encoding = 35', '35'],
      ['encoding default', null],
      ["lc_ctype 'C'", null],
    ]
    for (const [option, encoding] of encodings)
      expect(parseDatabaseCommand(`create database e ${option} template template0`), option).toMatchObject({ encoding })
    expect(parseDatabaseCommand('create database w2 template tpl')).toMatchObject({ template: 'tpl' })
    for (const sql of [
      'create database w3 template default',
      'create database w4 template = template1',
      'create database w5 owner template',
    ]) {
      expect(parseDatabaseCommand(sql), sql).toMatchObject({ template: null, early: null })
    }
    expect(parseDatabaseCommand("create database w6 owner 'it''s' tablespace E'a\\'b'")).toMatchObject({
      owner: "it's",
      tablespace: "a'b",
    })
    expect(parseDatabaseCommand('drop database shop;')).toEqual({
      kind: 'drop',
      name: 'shop',
      ifExists: false,
      force: false,
    })
    expect(parseDatabaseCommand('DROP DATABASE IF EXISTS s (FORCE)')).toEqual({
      kind: 'drop',
      name: 's',
      ifExists: true,
      force: true,
    })
  })

  it("CREATE DATABASE's options: what Postgres refuses in them, with its words, where it says so", () => {
    const refusal = (options: string) => {
      const command = parseDatabaseCommand(`create database d ${options}`)
      if (command?.kind !== 'create') throw new Error(`not a CREATE DATABASE: ${options}`)
      const error = command.early ?? command.strategy
      return error && { code: error.sqlstate, message: error.message, position: error.position, hint: error.hint }
    }
    const start = 'create database d '.length + 1
    const cases: Array<[string, string, string, string?]> = [
      ['foo bar', '42601', 'option "foo" not recognized', 'foo'],
      ['"OWNER" postgres', '42601', 'option "OWNER" not recognized', '"OWNER"'],
      ["encoding 'UTF8' encoding 'UTF8'", '42601', 'conflicting or redundant options', "encoding 'UTF8'"],
      ['connection limit 1 connection_limit 2', '42601', 'conflicting or redundant options', 'connection_limit'],
      ['owner default owner postgres', '42601', 'conflicting or redundant options', 'owner postgres'],
      ['oid 99', '22023', 'OIDs less than 16384 are reserved for system objects'],
      ["oid 'abc'", '42601', 'oid requires a numeric value'],
      ["encoding 'nosuch' owner nosuch", '42704', 'nosuch is not a valid encoding name', 'encoding'],
      ['locale_provider nosuch owner nosuch', '42P17', 'unrecognized locale provider: nosuch'],
      ['is_template maybe', '42601', 'is_template requires a Boolean value'],
      ['allow_connections 2', '42601', 'allow_connections requires a Boolean value'],
      ["connection limit 'x'", '42601', 'connection_limit requires an integer value'],
      ['connection limit = 2.5', '42601', 'connection_limit requires an integer value'],
      ['connection limit = - 5', '22023', 'invalid connection limit: -5'],
      ['strategy nosuch', '22023', 'invalid create database strategy "nosuch"'],
      ['owner = current_user', '42601', 'syntax error at or near "current_user"', 'current_user'],
      ['connection 5', '42601', 'syntax error at or near "5"', '5'],
      ['owner (x)', '42601', 'syntax error at or near "("', '('],
      ['default 1', '42601', 'syntax error at or near "default"', 'default'],
    ]
    for (const [options, code, message, where] of cases) {
      const position = where === undefined ? undefined : start + options.lastIndexOf(where)
      expect(refusal(options), options).toMatchObject({ code, message, position })
    }
    expect(refusal('is_template')).toMatchObject({
      code: '42601',
      message: 'syntax error at end of input',
      position: start + 'is_template'.length,
    })
    expect(refusal('is_template  ; ')).toMatchObject({
      message: 'syntax error at or near ";"',
      position: start + 'is_template  '.length,
    })
    expect(refusal('strategy nosuch')?.hint).toBe('Valid strategies are "wal_log" and "file_copy".')
    for (const options of [
      'with',
      "with connection limit = -1 is_template 0 allow_connections 'ON' strategy FILE_COPY oid 20000",
      "locale 'C' lc_collate = 'C' lc_ctype 'C' icu_locale 'en' builtin_locale 'C' locale_provider = Builtin",
      'owner = default template = default encoding = default tablespace = default is_template true',
      "collation_version '1' icu_rules '' allow_connections off is_template = false",
    ])
      expect(refusal(options), options).toBeNull()
    const located = parseDatabaseCommand("create database d location '/tmp' owner postgres")
    expect(located?.kind === 'create' && located.warnings.length).toBe(1)
  })

  it("ALTER DATABASE of another database than the client's is the server's; of its own, or a built-in template, PGlite's", () => {
    const sql = 'ALTER DATABASE "Tpl" WITH is_template = true'
    const of = (text: string, current: string) =>
      databaseCommandIn(
        text,
        keywordsIn(Buffer.from(text), 0, text.length),
        firstLetter(Buffer.from(text), 0, text.length),
        current,
      )
    expect(of(sql, 'postgres')).toEqual({ kind: 'alter', name: 'Tpl', rename: false, sql })
    expect(of('alter database w1 rename to w2', 'postgres')).toMatchObject({ kind: 'alter', name: 'w1', rename: true })
    expect(of(sql, 'Tpl')).toBeNull()
    expect(of('alter database template1 refresh collation version', 'postgres')).toBeNull()
    expect(of('alter table database add column x int', 'postgres')).toBeNull()
  })

  it('is null for anything else, or more than one statement', () => {
    for (const sql of [
      'create table database (x int)',
      'drop database',
      'alter database x',
      'create database a; create database b',
      'drop database a cascade',
      "select 'create database x'",
    ]) {
      expect(parseDatabaseCommand(sql), sql).toBeNull()
    }
  })
})

describe('rewriteResetCalls', () => {
  it('replaces exactly `select pglite_dev_db.reset()`, any case and spacing, and nothing else', () => {
    const out = rewriteResetCalls('select 1; SELECT pglite_dev_db . reset ( ); select 2')!
    expect(out).toMatch(
      /^select 1; select pg_catalog\.set_config\('pglite_dev_db\.reset', 'requested', false\) as reset; select 2$/,
    )
    expect(rewriteResetCalls('select pglite_dev_db.reset(1)')).toBeNull()
    expect(rewriteResetCalls("select 'select pglite_dev_db.reset()'")).toBeNull()
  })
})

describe('parseDiscard', () => {
  it('DISCARD ALL and DEALLOCATE [PREPARE] ALL as the whole statement', () => {
    expect(parseDiscard(' discard all ;')).toBe('DISCARD ALL')
    expect(parseDiscard('DEALLOCATE PREPARE ALL')).toBe('DEALLOCATE ALL')
    expect(parseDiscard('DISCARD TEMPORARY')).toBe('DISCARD TEMP')
    expect(parseDiscard('/* pool reset */ DISCARD ALL;; -- done')).toBe('DISCARD ALL')
    for (const sql of ['discard plans', 'deallocate x', 'discard all; select 1', "select 'discard all'"])
      expect(parseDiscard(sql), sql).toBeNull()
  })

  it('rewriteStandIns: each DISCARD TEMP among several statements and each CLOSE ALL, with its index among them', () => {
    const own = { closeAllCursors: () => 'CLOSE_MINE', deallocateAll: () => 'DEALLOCATE_MINE' }
    const rewritten = rewriteStandIns(
      "select 'discard temp';; DISCARD TEMPORARY; select 2; discard temp; Close All; deallocate prepare all",
      own,
    )
    expect(rewritten?.standIns).toEqual([
      { index: 1, tag: 'DISCARD TEMP' },
      { index: 3, tag: 'DISCARD TEMP' },
      { index: 4, tag: 'CLOSE CURSOR ALL' },
      { index: 5, tag: 'DEALLOCATE ALL' },
    ])
    expect(rewritten?.sql.replaceAll(DROP_OWN_TEMP_OBJECTS_SQL, 'DROP')).toBe(
      "select 'discard temp';; DROP; select 2; DROP; CLOSE_MINE; DEALLOCATE_MINE",
    )
    expect(rewriteStandIns('close all', own)).toEqual({
      sql: 'CLOSE_MINE',
      standIns: [{ index: 0, tag: 'CLOSE CURSOR ALL' }],
    })
    for (const sql of [
      'discard temp',
      'deallocate all',
      'select 1; discard all',
      "select 1; select 'discard temp'",
      'close allx',
      'close c',
      "select 'close all'",
    ])
      expect(rewriteStandIns(sql, own), sql).toBeNull()
  })

  it("withStandInTags: each stand-in's CommandComplete gets its own tag", () => {
    const reply = Buffer.concat([
      encodeCommandComplete('DO'),
      encodeCommandComplete('SELECT 1'),
      encodeCommandComplete('DO'),
      encodeReadyForQuery(0x49),
    ])
    const tags = (bytes: Buffer) =>
      [...bytes.toString('latin1').matchAll(/C\0\0\0[\s\S]([A-Z 0-9]+)\0/g)].map((m) => m[1])
    const standIns = [
      { index: 0, tag: 'CLOSE CURSOR ALL' },
      { index: 2, tag: 'DISCARD TEMP' },
    ] as const
    expect(tags(withStandInTags(reply, standIns))).toEqual(['CLOSE CURSOR ALL', 'SELECT 1', 'DISCARD TEMP'])
  })

  it("withDiscardTags: the stand-ins' CommandCompletes at the indices given get the command's tag", () => {
    const reply = Buffer.concat([
      encodeCommandComplete('SELECT 1'),
      encodeCommandComplete('DO'),
      encodeCommandComplete('DO'),
      encodeReadyForQuery(0x49),
    ])
    const tags = (bytes: Buffer) =>
      [...bytes.toString('latin1').matchAll(/C\0\0\0[\s\S]([A-Z 0-9]+)\0/g)].map((m) => m[1])
    expect(tags(withDiscardTags(reply, [1], 'DISCARD TEMP'))).toEqual(['SELECT 1', 'DISCARD TEMP', 'DO'])
    expect(tags(withDiscardTags(reply, [0], 'DISCARD TEMP'))).toEqual(['SELECT 1', 'DO', 'DO'])
  })
})

describe('listenCommands', () => {
  it('finds LISTEN and UNLISTEN statements, folding unquoted names and keeping quoted ones', () => {
    expect(listenCommands('LISTEN Orders; listen "Audit""s"; UNLISTEN orders; unlisten *; UNLISTEN "*"')).toEqual([
      { kind: 'listen', channel: 'orders' },
      { kind: 'listen', channel: 'Audit"s' },
      { kind: 'unlisten', channel: 'orders' },
      { kind: 'unlisten', channel: null },
      { kind: 'unlisten', channel: '*' },
    ])
  })

  it('ignores the word inside literals, comments, dollar quotes and other statements', () => {
    const sql =
      "select 'listen a', E'\\' listen b'; -- listen c\n/* listen /* d */ */ do $x$ begin execute 'listen e'; end $x$; select listen from t; listen 'f'"
    expect(listenCommands(sql)).toEqual([])
  })
})

describe('startupSettings', () => {
  it('takes every startup parameter but user/database/replication, and -c / -- pairs from options', () => {
    const params = new Map([
      ['user', 'postgres'],
      ['database', 'postgres'],
      ['application_name', 'psql'],
      ['options', '-c search_path=a,\\ b --statement-timeout=5s -cwork_mem=64kB  junk -c'],
    ])
    expect(startupSettings(params)).toEqual([
      ['application_name', 'psql'],
      ['search_path', 'a, b'],
      ['statement_timeout', '5s'],
      ['work_mem', '64kB'],
    ])
  })
})

describe('rewriteServerFunctions', () => {
  it('pg_backend_pid() becomes the client pid, named as the function; advisory, cancel and terminate calls go to pg_temp', () => {
    const use = rewriteServerFunctions(
      "select pg_backend_pid(), pg_catalog.pg_advisory_lock(1), pg_try_advisory_xact_lock_shared($1, 2), 'pg_advisory_lock(3)' from pg_stat_activity",
      77,
    )
    expect(use).toEqual({
      sql: "select (SELECT 77::pg_catalog.int4 AS pg_backend_pid), pg_temp.pg_advisory_lock(1), pg_temp.pg_try_advisory_xact_lock_shared($1, 2), 'pg_advisory_lock(3)' from pg_stat_activity",
      needsContext: true,
      readsActivity: true,
      mayWait: true,
      signals: [],
    })
    expect(rewriteServerFunctions('select pg_backend_pid()', 5)).toEqual({
      sql: 'select (SELECT 5::pg_catalog.int4 AS pg_backend_pid)',
      needsContext: false,
      readsActivity: false,
      mayWait: false,
      signals: [],
    })
    // Where no subquery is allowed (a DEFAULT, CALL and EXECUTE arguments): the value alone.
    expect(rewriteServerFunctions('CREATE TABLE t (pid int DEFAULT pg_backend_pid())', 5)?.sql).toBe(
      'CREATE TABLE t (pid int DEFAULT (5::pg_catalog.int4))',
    )
    expect(rewriteServerFunctions('call p(pg_backend_pid()); execute s(pg_backend_pid())', 5)?.sql).toBe(
      'call p((5::pg_catalog.int4)); execute s((5::pg_catalog.int4))',
    )
    expect(rewriteServerFunctions('with w as (select 1) select pg_backend_pid() from w', 5)?.sql).toBe(
      'with w as (select 1) select (SELECT 5::pg_catalog.int4 AS pg_backend_pid) from w',
    )
    expect(
      rewriteServerFunctions(
        'select pg_cancel_backend( 4242 ), pg_terminate_backend(77, 1000), pg_cancel_backend($1), pg_terminate_backend($2::int)',
        5,
      )?.signals,
    ).toEqual([
      { op: 'cancel', pid: 4242 },
      { op: 'terminate', pid: 77 },
      { op: 'cancel', param: 1 },
      { op: 'terminate', param: 2 },
    ])
    // A pid the statement works out (a column, an expression) is the session's function's to signal when it runs.
    expect(
      rewriteServerFunctions('select pg_cancel_backend(pid), pg_terminate_backend($1 + 1) from t', 5)?.signals,
    ).toEqual([])
    expect(rewriteServerFunctions('select pg_terminate_backend(pid) from pg_catalog.pg_stat_activity', 5)?.sql).toBe(
      'select pg_temp.pg_terminate_backend(pid) from pg_temp.pg_stat_activity',
    )
    expect(rewriteServerFunctions('select pg_try_advisory_lock(1)', 5)).toMatchObject({
      needsContext: true,
      readsActivity: false,
      mayWait: false,
    })
  })

  it('leaves everything else alone: other pg_ names, literals, comments, a column named like a function', () => {
    for (const sql of [
      'select * from pg_class',
      "select 'pg_backend_pid()'",
      'select 1 -- pg_advisory_lock(1)',
      'select pg_advisory_lock from t',
    ]) {
      expect(rewriteServerFunctions(sql, 1), sql).toBeNull()
    }
  })
})

describe('cursorNameEdits', () => {
  const held = (names: string[]) => (name: string) => names.includes(name)
  it('finds DECLARE ... WITH HOLD, and FETCH, MOVE, CLOSE, WHERE CURRENT OF of held cursors only', () => {
    const sql =
      'declare c binary cursor with hold for select 1; fetch 5 from c; move all in "Other"; close c; update t set a = 1 where current of d; declare e cursor without hold for select 2'
    expect(cursorNameEdits(sql, held(['d'])).map((e) => [e.kind, e.name])).toEqual([
      ['declare-hold', 'c'],
      ['use', 'c'],
      ['close', 'c'],
      ['use', 'd'],
    ])
  })

  it('a cursor closed earlier in the text is no longer held; CLOSE ALL names none', () => {
    expect(cursorNameEdits('close x; fetch x; close all', held(['x'])).map((e) => [e.kind, e.name])).toEqual([
      ['close', 'x'],
    ])
  })
})

describe('createdExtensions', () => {
  it('names what CREATE EXTENSION [IF NOT EXISTS] creates, quoted or not, and nothing else', () => {
    expect(
      createdExtensions(
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"; create extension vector with schema public; select 1',
      ),
    ).toEqual(['uuid-ossp', 'vector'])
    expect(createdExtensions("select 'create extension x'; drop extension y; alter extension z update")).toEqual([])
  })
})
