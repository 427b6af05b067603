// The image of a PGlite booted in a thread only to take it (image.ts): the thread closes once the image is taken.

import type { EngineImage } from './image.ts'
import { DbThread, type DbThreadOptions } from './thread.ts'

/** Boot a thread as `options` say, take its image and close it; throws why the image could not be taken. */
export async function bootForImage(options: Omit<DbThreadOptions, 'image'>): Promise<EngineImage | null> {
  const db = await DbThread.create({ ...options, image: 'take' })
  await db.close()
  if (db.image instanceof Error) throw db.image
  return db.image
}
