// The image new in-memory databases in threads start from (engine/image.ts), instead of booting: taken from the
// first one booted from the template, or kept in the cache beside the template. A data dir's server lets it go a
// while after its last new database, and reads it again for the next.

import type { Logger } from '../log.ts'
import { imageDir, templateBlob, type Template } from './template.ts'
import type { DbThread } from '../engine/thread.ts'
import { bootForImage } from '../engine/boot-image.ts'
import type { LoadedExtensions } from '../engine/extensions.ts'
import type { EngineImage } from '../engine/image.ts'
import { hasImage, loadImage, saveImage } from '../engine/image-on-disk.ts'
import { noteBusy } from '../engine/collect-garbage.ts'

/** A data dir's server holds the image (about 50 MB) for this long after a new database, for the next ones. */
const IMAGE_IDLE_MS = 30_000

export interface TemplateImageOptions {
  template: () => Promise<Template | null>
  /** Postgres start parameters and extension bundles every database has: the image's. */
  startParams: string[]
  extensions: LoadedExtensions
  /** false (a data dir's server): the image is let go IMAGE_IDLE_MS after the last new database. */
  keepImage?: boolean
  /** Whether databases run in worker threads (only those start from an image). */
  threads: boolean
  /** The database a booted template's cluster holds. */
  database: string
  log: Logger
}

export class TemplateImage {
  readonly #options: TemplateImageOptions
  /** The image, once one was taken. */
  #image: EngineImage | null
  /** An image could not be taken (said once): every database boots. */
  #noImage = false
  /** Keeping the image in the cache. */
  #saving: Promise<void> | null = null
  /** Loading the image from the cache, or making it. */
  #imaging: Promise<EngineImage | null> | null = null
  #letGo: NodeJS.Timeout | undefined

  /** `image`: one taken already (the main database's, in memory), kept in the cache now. */
  constructor(options: TemplateImageOptions, image: EngineImage | null) {
    this.#options = options
    this.#image = image
    if (image)
      this.#saving = options.template().then((template) => (template ? this.#save(template, image) : undefined))
  }

  /** Whether new in-memory databases start from an image (and so are cheap enough to load several ahead). */
  get ready(): boolean {
    return this.#image !== null
  }

  /** None was taken and none failed: the next database booted from the template is imaged. */
  get wanted(): boolean {
    return !this.#image && !this.#noImage
  }

  /** `db` was started to take its image: the image new databases start from now. */
  keepFrom(db: DbThread): void {
    const image = db.image
    db.image = null
    if (image instanceof Error) {
      this.drop(image)
    } else if (image) {
      this.#image = image
      this.#holdAWhile()
      this.#saving = this.#options.template().then((template) => (template ? this.#save(template, image) : undefined))
    }
  }

  /** The image cannot be used (`error` says why): every database boots from now on. */
  drop(error: unknown): void {
    this.#image = null
    this.#noImage = true
    this.#options.log.warn('new databases boot (a booted one could not be copied)', { error })
  }

  /** Resolves once the image is in the cache, if it is being kept there: a stop waits for it (the next start needs it). */
  async kept(): Promise<void> {
    await this.#saving
  }

  /**
   * The image new databases start from: taken already, or kept in the cache; else, when `make`, a database is booted
   * from the template to take it (then kept in the cache). Null: they boot.
   */
  async of(template: Template, make: boolean): Promise<EngineImage | null> {
    this.#holdAWhile()
    if (this.#image || this.#noImage || !this.#options.threads) return this.#image
    this.#imaging ??= loadImage(this.#dir(template), this.#options.log)
    const cached = await this.#imaging
    if (cached || !make) {
      this.#image ??= cached
      return this.#image
    }
    this.#imaging = (async () => {
      const { startParams, extensions, database } = this.#options
      const image = await bootForImage({
        loadDataDir: await templateBlob(template),
        startParams,
        extensions: [...extensions.names],
        database,
      })
      if (image) await this.#save(template, image)
      return image
    })().catch((error: unknown) => {
      this.drop(error)
      return null
    })
    this.#image ??= await this.#imaging
    return this.#image
  }

  /** The server is stopping. */
  stop(): void {
    clearTimeout(this.#letGo)
  }

  #holdAWhile(): void {
    if (this.#options.keepImage !== false) return
    clearTimeout(this.#letGo)
    this.#letGo = setTimeout(() => {
      ;[this.#image, this.#imaging] = [null, null]
      noteBusy() // the server's thread collects once idle, as after work, and the image's memory goes back
    }, IMAGE_IDLE_MS).unref()
  }

  /** Where the image of a database with every database's start parameters and bundles is kept, beside its template. */
  #dir(template: Template): string {
    return imageDir(template, this.#options.startParams, this.#options.extensions.names)
  }

  #save(template: Template, image: EngineImage): Promise<void> {
    const dir = this.#dir(template)
    const saving = (async () => {
      if (await hasImage(dir)) return
      await saveImage(image, dir).catch((error: unknown) =>
        this.#options.log.warn('cannot keep the database image in the cache', { dir, error }),
      )
    })()
    this.#saving = saving
    return saving
  }
}
