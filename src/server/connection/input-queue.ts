// A client's batches waiting to run, in order. Past MAX_QUEUED_BATCHES its socket stops reading until the queue is
// down to half, so a client that pipelines without end holds a bounded amount of the server's memory.

import type { Socket } from 'node:net'
import type { Frames } from '../protocol/frames.ts'

/** Above this many queued batches the socket stops reading until the queue drains. */
const MAX_QUEUED_BATCHES = 64

export class InputQueue {
  readonly #batches: Frames[] = []
  #paused = false
  /** The client's socket as it is now (a TLS one once the client asked for TLS). */
  readonly #socket: () => Socket

  constructor(socket: () => Socket) {
    this.#socket = socket
  }

  get length(): number {
    return this.#batches.length
  }

  push(frames: Frames): void {
    this.#batches.push(frames)
    if (this.#batches.length >= MAX_QUEUED_BATCHES && !this.#paused) {
      this.#paused = true
      this.#socket().pause()
    }
  }

  /** The next batch; the socket reads again once the queue is down to half. */
  shift(): Frames | undefined {
    const frames = this.#batches.shift()
    if (this.#paused && this.#batches.length < MAX_QUEUED_BATCHES / 2) {
      this.#paused = false
      this.#socket().resume()
    }
    return frames
  }

  clear(): void {
    this.#batches.length = 0
  }
}
