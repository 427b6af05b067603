// What a client's open pipeline has done since it was last at rest: if only Parse, Describe of a statement, Close and
// Flush, nothing of it has run, and the client may give the session up until it sends more (BatchRunner parks it).
// Its unnamed statement, if another client's replaces it meanwhile, is made again as any client's is (BatchRunner).

import { FrontendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { forEachFrame } from '../protocol/frames.ts'

const LETTER_S = 0x53 // S

export class PreparedPipeline {
  /** Since the client was last at rest, its messages only prepared statements. */
  only = true

  /** A segment ran; `atRest`: the client is at rest after it. */
  ran(bytes: Buffer, atRest: boolean): void {
    if (atRest) {
      this.only = true
      return
    }
    if (!this.only) return
    forEachFrame(bytes, (code, offset) => {
      const prepares =
        code === FrontendCode.Parse ||
        code === FrontendCode.Flush ||
        code === FrontendCode.Close ||
        (code === FrontendCode.Describe && bytes[offset + HEADER_LENGTH] === LETTER_S)
      if (!prepares) this.only = false
      return prepares
    })
  }
}
