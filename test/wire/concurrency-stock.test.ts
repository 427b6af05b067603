// Every scenario of test/helpers/concurrency-cases.ts against stock pglite-socket 0.2.17, each on a fresh server and
// PGlite: stock must show its known defect, so a scenario that stops reproducing it on stock is noticed (it would then
// prove nothing about ours, test/wire/concurrency-patched.test.ts).
import { describe } from 'vitest'
import { caseTests } from '../helpers/concurrency-cases.ts'
import { stock } from '../helpers/targets.ts'

describe('stock', () => caseTests(stock))
