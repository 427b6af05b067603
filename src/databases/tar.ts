// Just enough of the tar format (POSIX ustar, as PGlite's dumpDataDir writes it) to list a data dir tarball and
// rewrite it: drop entries, move one to the end. Headers are 512-byte blocks; each entry's data is padded to 512.

const BLOCK = 512
/** ustar header fields (POSIX.1-1988): offset and length in bytes. */
const Field = {
  name: [0, 100],
  size: [124, 12],
  magic: [257, 6],
  prefix: [345, 155],
} as const

export interface TarEntry {
  /** Path as stored, without a leading `/` or `./`. */
  name: string
  /** Byte range of the whole entry (header and padded data) in the archive. */
  start: number
  end: number
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TarFormatError'
  }
}

function text(block: Uint8Array, [offset, length]: readonly [number, number]): string {
  const field = block.subarray(offset, offset + length)
  const nul = field.indexOf(0)
  return new TextDecoder().decode(nul < 0 ? field : field.subarray(0, nul))
}

/** The entries of an uncompressed tar archive, in order, up to the end-of-archive blocks. Throws TarFormatError. */
export function listTar(tar: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = []
  let offset = 0
  while (offset + BLOCK <= tar.length) {
    const header = tar.subarray(offset, offset + BLOCK)
    if (header.every((byte) => byte === 0)) return entries
    if (!text(header, Field.magic).startsWith('ustar')) throw new TarFormatError(`no ustar header at byte ${offset}`)
    const sizeText = text(header, Field.size).trim()
    if (!/^[0-7]+$/.test(sizeText)) throw new TarFormatError(`bad size field at byte ${offset}`)
    const size = Number.parseInt(sizeText, 8)
    const prefix = text(header, Field.prefix)
    const name = (prefix ? `${prefix}/` : '') + text(header, Field.name)
    const end = offset + BLOCK + Math.ceil(size / BLOCK) * BLOCK
    if (end > tar.length) throw new TarFormatError(`entry ${name} runs past the end of the archive`)
    entries.push({ name: name.replace(/^\.?\/+/, ''), start: offset, end })
    offset = end
  }
  throw new TarFormatError('the archive has no end-of-archive marker')
}

/**
 * The archive without the entries `drop` selects, and with the entries `last` selects moved to the end (after
 * everything else), closed by the two zero blocks tar ends with.
 */
export function rewriteTar(
  tar: Uint8Array,
  entries: readonly TarEntry[],
  drop: (name: string) => boolean,
  last: (name: string) => boolean,
): Uint8Array {
  const kept = entries.filter((entry) => !drop(entry.name))
  const ordered = [...kept.filter((entry) => !last(entry.name)), ...kept.filter((entry) => last(entry.name))]
  const size = ordered.reduce((sum, entry) => sum + entry.end - entry.start, 0) + 2 * BLOCK
  const out = new Uint8Array(size)
  let offset = 0
  for (const entry of ordered) {
    out.set(tar.subarray(entry.start, entry.end), offset)
    offset += entry.end - entry.start
  }
  return out
}
