// Memory over a long mixed load: the soak (scripts/soak.ts, in its own process) against the server for N minutes,
// RSS sampled every 10 s, then 60 s idle. The goals: back within 64 MB of idle 60 s after, and no upward trend.
import { spawn } from 'node:child_process'
import { connectClient, seconds, sleep, timedQuery } from './clients.ts'
import { IDLE_ALLOWANCE_MB, meanOf, round1, slopeMbPerMinute, startSampler, type Sample } from './memory.ts'
import type { Measured, RunContext, Scenario } from './scenario.ts'
import { REPO_ROOT, type Target } from './targets.ts'
import { StalledError, withDeadline } from '../raw-client.ts'

const SERIES_EVERY_MS = 10_000
const SETTLE_MS = 3_000
const IDLE_MS = 2_000
const AFTER_MS = 60_000
/** "No trend": the least-squares line through the second half of the run rises less than this. */
const TREND_ALLOWANCE_MB = 32
const SOAK_APP = 'limits-soak'

interface SoakRun {
  exitCode: number | null
  /** The soak's report (its stdout): the table of operations and the result line. */
  report: string
  stalled: boolean
}

/** scripts/soak.ts against `url`, its connections named for the memory monitor; killed past its bound. */
async function runSoakProcess(url: string, soakSeconds: number, context: RunContext): Promise<SoakRun> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'scripts/soak.ts', '--url', url, '--seconds', String(soakSeconds)],
    {
      cwd: REPO_ROOT,
      // Both drivers the soak uses (node-postgres, postgres.js) take their application_name from PGAPPNAME.
      env: { ...process.env, PGAPPNAME: SOAK_APP },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let report = ''
  child.stdout!.setEncoding('utf8').on('data', (text: string) => (report += text))
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    for (const line of text.split('\n')) if (line.trim()) context.log(`  ${line}`)
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  try {
    return {
      exitCode: await withDeadline(exited, soakSeconds * 1000 + 180_000, 'soak process'),
      report: report.trim(),
      stalled: false,
    }
  } catch (error) {
    if (!(error instanceof StalledError)) throw error
    child.kill('SIGTERM')
    await withDeadline(exited, 10_000, 'soak exit after SIGTERM').catch((stalled: unknown) => {
      if (!(stalled instanceof StalledError)) throw stalled
      child.kill('SIGKILL')
    })
    return { exitCode: null, report: report.trim(), stalled: true }
  }
}

type Field = 'rssMb' | 'pssMb'

/**
 * Idle, the windows at both ends of the run, the peak, 60 s after, and the second half's trend, for one field.
 * `dataGrowthMb`: what the server's files (databases, WAL) grew during the run when they are part of this memory (--memory): the
 * goals allow it on top (the trend assumes it grew evenly), as PostgreSQL's data is in files, not in its RSS.
 */
function seriesFigures(
  samples: Sample[],
  field: Field,
  idleMb: number,
  start: number,
  end: number,
  windowMs: number,
  dataGrowthMb: number,
) {
  const during = samples.filter((s) => s.ms >= start && s.ms <= end).map((s) => s[field] ?? 0)
  const last = samples.at(-1)
  const half = start + (end - start) / 2
  const slope = slopeMbPerMinute(samples, field, half, end)
  const riseMb = slope === null ? null : round1((slope * (end - half)) / 60_000)
  const afterMb = last?.[field] ?? null
  return {
    idleMb: round1(idleMb),
    firstWindowMb: meanOf(samples, field, start, start + windowMs),
    lastWindowMb: meanOf(samples, field, end - windowMs, end),
    peakMb: during.length ? Math.max(...during) : null,
    afterMb,
    isBack: afterMb === null ? null : afterMb <= idleMb + IDLE_ALLOWANCE_MB + dataGrowthMb,
    secondHalfSlopeMbPerMin: slope === null ? null : round1(slope),
    secondHalfRiseMb: riseMb,
    hasNoTrend: riseMb === null ? null : riseMb - dataGrowthMb / 2 < TREND_ALLOWANCE_MB,
  }
}

export const mixedLoadScenario: Scenario = {
  id: 'soak',
  lines: [
    {
      id: 'soak-after',
      what: 'the mixed soak (scripts/soak.ts: pools, transactions, COPY, LISTEN/NOTIFY, cut-off clients), then 60 s idle',
      goal: `soak passes; RSS 60 s after ≤ idle + ${IDLE_ALLOWANCE_MB} MB (with --memory: + what its files grew, which are in RAM)`,
    },
    {
      id: 'soak-trend',
      what: 'RSS sampled every 10 s during that soak',
      goal: `no trend: the second half's fitted line rises < ${TREND_ALLOWANCE_MB} MB (with --memory: beyond half its files' growth)`,
    },
  ],
  async run(target: Target, context: RunContext) {
    if (!target.readMemory())
      return {
        'soak-after': { text: 'memory not readable from this machine', met: null, figures: {} },
        'soak-trend': { text: '', met: null, figures: {} },
      }
    const soakMs = Math.round(context.soakMinutes * 60_000)
    const windowMs = Math.min(Math.max(60_000, Math.round(context.soakMinutes / 6) * 60_000), soakMs / 2)
    await sleep(SETTLE_MS)
    const idleSampler = startSampler(target, 100)
    await sleep(IDLE_MS)
    idleSampler.stop()
    const idleSamples = idleSampler.samples()
    const dataBeforeMb = await databaseSizeMb(target.url)
    const series = startSampler(target, SERIES_EVERY_MS)
    try {
      context.log(`  soak for ${context.soakMinutes} min`)
      const soak = await runSoakProcess(target.url, Math.round(soakMs / 1000), context)
      const end = Math.round(series.now())
      series.mark('soak ended')
      const dataMb = await databaseSizeMb(target.url)
      context.log(
        `  soak ended (exit ${soak.exitCode}), its files (databases and WAL) ${dataBeforeMb ?? '?'} MB before, ${dataMb ?? '?'} MB after; ${AFTER_MS / 1000} s idle`,
      )
      const dataInRam = target.name === 'ours' && context.storage === 'memory'
      const dataGrowthMb =
        dataInRam && dataMb !== null && dataBeforeMb !== null ? round1(Math.max(0, dataMb - dataBeforeMb)) : 0
      await sleep(AFTER_MS)
      series.stop()
      const samples = series.samples()
      // The soak's own set-up (schema, pools) takes a few seconds after its start: the run is the whole process.
      const figure = (field: Field) => {
        const idle = idleSamples
          .map((s) => s[field])
          .filter((v): v is number => v !== undefined)
          .sort((a, b) => a - b)
        return seriesFigures(
          samples,
          field,
          idle[idle.length >> 1] ?? 0,
          0,
          end,
          windowMs,
          field === 'rssMb' ? dataGrowthMb : 0,
        )
      }
      const rss = figure('rssMb')
      const pss = samples.some((s) => s.pssMb !== undefined) ? figure('pssMb') : null
      const passed = soak.exitCode === 0
      const resultLine = soak.report.split('\n').at(-1) ?? ''
      const windowText = windowMs >= 120_000 ? `${windowMs / 60_000} min` : seconds(windowMs)
      const label = target.name === 'postgres' ? 'RSS (sum)' : 'RSS'
      let afterText = `${context.soakMinutes} min: ${passed ? 'soak ok' : `soak FAILED (${soak.stalled ? 'stalled' : resultLine})`}; ${label} idle ${rss.idleMb.toFixed(0)}, first/last ${windowText} ${rss.firstWindowMb?.toFixed(0)}/${rss.lastWindowMb?.toFixed(0)}, peak ${rss.peakMb?.toFixed(0)}, 60 s after ${rss.afterMb?.toFixed(0)} MB`
      if (dataMb !== null)
        afterText += ` (files ${dataBeforeMb ?? '?'} → ${dataMb} MB${dataInRam ? `, in RAM: goal ≤ ${round1(rss.idleMb + IDLE_ALLOWANCE_MB + dataGrowthMb)} MB` : ''})`
      if (pss)
        afterText += `; PSS idle ${pss.idleMb.toFixed(0)}, first/last ${pss.firstWindowMb?.toFixed(0)}/${pss.lastWindowMb?.toFixed(0)}, 60 s after ${pss.afterMb?.toFixed(0)} MB`
      let trendText = `second half ${signed(rss.secondHalfRiseMb)} MB (${signed(rss.secondHalfSlopeMbPerMin)} MB/min), ${samples.length} samples`
      if (dataGrowthMb > 0)
        trendText += `; less half the files' growth: ${signed(round1((rss.secondHalfRiseMb ?? 0) - dataGrowthMb / 2))} MB`
      if (pss) trendText += `; PSS ${signed(pss.secondHalfRiseMb)} MB`
      const figures = {
        minutes: context.soakMinutes,
        windowMs,
        storage: context.storage,
        database: { beforeMb: dataBeforeMb, afterMb: dataMb, inRam: dataInRam },
        rss,
        ...(pss ? { pss } : {}),
        soak: { exitCode: soak.exitCode, stalled: soak.stalled, report: soak.report },
        samples,
      }
      const judged = target.name === 'ours'
      return {
        'soak-after': { text: afterText, met: judged ? passed && rss.isBack === true : null, figures },
        'soak-trend': {
          text: trendText,
          met: judged ? rss.hasNoTrend : null,
          figures: {
            minutes: context.soakMinutes,
            rss: { secondHalfSlopeMbPerMin: rss.secondHalfSlopeMbPerMin, secondHalfRiseMb: rss.secondHalfRiseMb },
          },
        },
      } satisfies Record<string, Measured>
    } finally {
      series.stop()
    }
  },
}

/** The size of the server's files: every database and the WAL (with --memory, all of it is in the server's RSS). */
async function databaseSizeMb(url: string): Promise<number | null> {
  const client = await connectClient(url).catch(() => null)
  if (!client) return null
  try {
    const reply = await timedQuery(
      client,
      'select (select sum(pg_database_size(oid)) from pg_database) + (select coalesce(sum(size), 0) from pg_ls_waldir())',
      10_000,
    )
    const bytes = Number(reply.rows[0]?.[0])
    return Number.isFinite(bytes) ? round1(bytes / 2 ** 20) : null
  } finally {
    await client.end()
  }
}

const signed = (n: number | null) => (n === null ? '?' : `${n >= 0 ? '+' : ''}${n.toFixed(1)}`)
