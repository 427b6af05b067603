// psql, the client people type into: three psql processes at once, each running a script with a transaction, a DO
// block, SQL PREPARE/EXECUTE/DEALLOCATE of the same statement name as the others, a statement left prepared when
// psql exits (it dies with the session: the next psql prepares the same name), and the \d and \dt meta-commands
// (catalog queries); then pg_isready. Every output is checked against what the script must print.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LIBPQ_ENV, runProcess } from '../process.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const SESSIONS = 3
const ROUNDS = 2
const PROCESS_DEADLINE_MS = 20_000

const run = (tool: string, args: string[]) =>
  runProcess(tool, args, { env: LIBPQ_ENV, deadlineMs: PROCESS_DEADLINE_MS })

function script(n: number): string {
  return `\\set ON_ERROR_STOP 1
drop schema if exists psql_s${n} cascade;
create schema psql_s${n};
create table psql_s${n}.items (id int primary key, qty int not null, note text);
begin;
insert into psql_s${n}.items select g, g * ${n + 1}, 'item ' || g from generate_series(1, 100) g;
commit;
do $$ begin insert into psql_s${n}.items values (1000, 1, 'from DO'); end $$;
prepare total (int) as select sum(qty) from psql_s${n}.items where id <= $1;
execute total(100);
execute total(1000);
deallocate total;
prepare kept_until_exit as select 1;
\\d psql_s${n}.items
\\dt psql_s${n}.*
`
}

export async function psqlScenario(url: string): Promise<Outcome> {
  const tally = createTally()
  const dir = await mkdtemp(join(tmpdir(), 'pglite-psql-'))
  try {
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        Array.from({ length: SESSIONS }, async (_, n) => {
          const file = join(dir, `session-${n}.sql`)
          await writeFile(file, script(n))
          await attempt(tally, async () => {
            const out = await run('psql', ['-X', '-At', '-d', url, '-f', file])
            const sum = 5050 * (n + 1)
            const lines = out.stdout.toString().split('\n')
            const problems = [
              out.code === 0 ? null : `exit ${out.code}: ${out.stderr.trim().split('\n')[0]}`,
              lines.includes(String(sum)) ? null : `no sum ${sum}`,
              lines.includes(String(sum + 1)) ? null : `no sum ${sum + 1} (the DO block's row)`,
              // \d in unaligned mode: column|type|collation|nullable|default
              lines.some((l) => l.startsWith('qty|integer||not null|')) ? null : '\\d has no "qty integer not null"',
              lines.some((l) => l === `psql_s${n}|items|table|postgres`) ? null : '\\dt does not list the table',
            ].filter((p) => p !== null)
            return problems.length === 0 ? true : `psql session ${n} round ${round}: ${problems.join('; ')}`
          })
        }),
      )
    }
    await attempt(tally, async () => {
      const { hostname, port } = new URL(url)
      const out = await run('pg_isready', ['-h', hostname, '-p', port])
      return out.code === 0 ? true : `pg_isready: exit ${out.code} ${out.stdout.toString().trim()}`
    })
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  return verdictOf(tally)
}

export const psqlScriptsScenario: Scenario = { name: 'psql', run: (url) => psqlScenario(url) }
