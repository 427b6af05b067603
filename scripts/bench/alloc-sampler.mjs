// Preloaded into a server by `npm run bench -- --alloc` (node --import): V8's sampling heap profiler on the server's
// thread, counting objects the collector has freed too, so that its total is what the thread allocated. SIGUSR1
// starts it; SIGUSR2 writes the profile to $PGLITE_DEV_DB_ALLOC_PROFILE.
import inspector from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

if (isMainThread && process.env.PGLITE_DEV_DB_ALLOC_PROFILE) {
  const session = new inspector.Session()
  session.connect()
  const post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
    )
  const fail = (error) => process.stderr.write(`alloc-sampler: ${error?.message ?? error}\n`)
  process.on('SIGUSR1', () => {
    post('HeapProfiler.startSampling', {
      samplingInterval: 512,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    }).catch(fail)
  })
  process.on('SIGUSR2', () => {
    post('HeapProfiler.stopSampling')
      .then(({ profile }) => writeFileSync(process.env.PGLITE_DEV_DB_ALLOC_PROFILE, JSON.stringify(profile)))
      .catch(fail)
  })
}
