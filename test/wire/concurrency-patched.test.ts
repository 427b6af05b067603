// Every scenario of test/helpers/concurrency-cases.ts against ours, each on a fresh server and PGlite: ours must
// behave like one Postgres per client (stock's half is test/wire/concurrency-stock.test.ts).
import { describe } from 'vitest'
import { caseTests } from '../helpers/concurrency-cases.ts'
import { patched } from '../helpers/targets.ts'

describe('patched', () => caseTests(patched))
