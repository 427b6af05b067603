// Summarize a V8 .cpuprofile (node --cpu-prof) as the Markdown tables `npm run bench -- --profile` prints: self time
// by area (PGlite's WASM, PGlite's JS, our src/, Node internals, idle, GC) and the top functions.
// Usage: npm run -s bench:profile-summary -- FILE.cpuprofile [TOP] [SKIP_MS]   (TOP default 25; SKIP_MS: leave out
//        the profile's first milliseconds, e.g. a server's start-up)
import { summarizeProfile, renderProfile } from './extras.ts'

const [file, top = '25', skipMs = '0'] = process.argv.slice(2)
if (!file || !(Number(top) > 0) || !(Number(skipMs) >= 0)) {
  process.stderr.write('usage: npm run -s bench:profile-summary -- FILE.cpuprofile [TOP] [SKIP_MS]\n')
  process.exit(2)
}
const skipped = Number(skipMs) > 0 ? `, after its first ${skipMs} ms` : ''
process.stdout.write(
  renderProfile(await summarizeProfile(file, Number(top), Number(skipMs)), `CPU profile ${file}${skipped}`),
)
