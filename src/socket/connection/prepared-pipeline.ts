// What a client's open pipeline has done since it was last at rest: if only Parse, Describe of a statement, Close and
// Flush, nothing of it has run, and the client may give the session up until it sends more (BatchRunner parks it).
// The unnamed statement it made is kept, to be made again if another client's replaces it meanwhile.

import { FrontendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { FLUSH } from '../protocol/frontend.ts'
import { UnnamedUse } from './messages.ts'

const LETTER_S = 0x53 // S

export class PreparedPipeline {
  /** Since the client was last at rest, its messages only prepared statements. */
  only = true
  /** The last unnamed Parse of the pipeline (a copy), while it only prepares. */
  #unnamed: Buffer | null = null
  /** Parked: the unnamed statement's Parse, to make again before the client binds it. */
  unnamedParse: Buffer | null = null

  /** A segment ran; `atRest`: the client is at rest after it. */
  ran(bytes: Buffer, atRest: boolean): void {
    if (atRest) {
      this.only = true
      this.#unnamed = this.unnamedParse = null
      return
    }
    if (!this.only) return
    forEachFrame(bytes, (code, offset, length) => {
      if (code === FrontendCode.Parse) {
        if (bytes[offset + HEADER_LENGTH] === 0) this.#unnamed = Buffer.from(bytes.subarray(offset, offset + length))
      } else if (!(code === FrontendCode.Flush || code === FrontendCode.Close || (code === FrontendCode.Describe && bytes[offset + HEADER_LENGTH] === LETTER_S))) {
        this.only = false
      }
    })
    if (!this.only) this.#unnamed = null
  }

  /** The client gave the session up (its pipeline ended by the server's Sync). */
  parked(): void {
    this.unnamedParse = this.#unnamed
    this.#unnamed = null
  }

  /**
   * Before a segment that binds or describes the unnamed statement first (`use`, UnnamedUse bits): the Parse to run
   * first, if the client parked with one. Made again whether or not another client's Parse replaced it: any simple
   * Query meanwhile (another client's, or the server's own) destroyed it too.
   */
  takeUnnamedParse(use: number): Buffer | null {
    const parse = this.unnamedParse
    if (parse === null || (use & (UnnamedUse.ReferencedFirst | UnnamedUse.Parsed)) === 0) return null
    this.unnamedParse = null
    return (use & UnnamedUse.ReferencedFirst) !== 0 ? Buffer.concat([parse, FLUSH]) : null
  }
}
