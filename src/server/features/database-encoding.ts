// CREATE DATABASE's ENCODING option. Every database here is a copy of one UTF8 template, and PGlite has no
// conversions to another server encoding: UTF8 by any of its names is made, any other is refused with the error
// Postgres gives on a UTF-8 locale, rather than a UTF8 database the client did not ask for.

import { SqlState, WireError } from '../../errors.ts'

/** Postgres's server encodings in the order of their codes (pg_wchar.h): a code is an index. */
const SERVER_ENCODINGS = [
  'SQL_ASCII',
  'EUC_JP',
  'EUC_CN',
  'EUC_KR',
  'EUC_TW',
  'EUC_JIS_2004',
  'UTF8',
  'MULE_INTERNAL',
  'LATIN1',
  'LATIN2',
  'LATIN3',
  'LATIN4',
  'LATIN5',
  'LATIN6',
  'LATIN7',
  'LATIN8',
  'LATIN9',
  'LATIN10',
  'WIN1256',
  'WIN1258',
  'WIN866',
  'WIN874',
  'KOI8R',
  'WIN1251',
  'WIN1252',
  'ISO_8859_5',
  'ISO_8859_6',
  'ISO_8859_7',
  'ISO_8859_8',
  'WIN1250',
  'WIN1253',
  'WIN1254',
  'WIN1255',
  'WIN1257',
  'KOI8U',
]
const UTF8_CODE = 6

/** Postgres's own spelling rule (clean_encoding_name): case and anything but letters and digits do not count. */
export const cleanEncodingName = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '')

/** Server encodings by cleaned name, with the aliases of theirs that clients send. */
const BY_NAME: ReadonlyMap<string, string> = new Map([
  ...SERVER_ENCODINGS.map((name): [string, string] => [cleanEncodingName(name), name]),
  ['unicode', 'UTF8'],
  ['iso88591', 'LATIN1'],
  ['iso885915', 'LATIN9'],
  ['koi8', 'KOI8R'],
  ['win', 'WIN1251'],
  ['alt', 'WIN866'],
])

/** The refusal of CREATE DATABASE's ENCODING `value` (as written: a name, or a number), or null to make it. */
export function encodingRefusal(value: string | null): WireError | null {
  if (value === null) return null
  const code = /^\d+$/.test(value) ? Number(value) : null
  if (code !== null && code >= SERVER_ENCODINGS.length)
    return new WireError('ERROR', SqlState.UndefinedObject, `${value} is not a valid encoding code`)
  const encoding = code !== null ? SERVER_ENCODINGS[code]! : BY_NAME.get(cleanEncodingName(value))
  if (encoding === undefined)
    return new WireError('ERROR', SqlState.UndefinedObject, `${value} is not a valid encoding name`)
  if (encoding === SERVER_ENCODINGS[UTF8_CODE]) return null
  return new WireError(
    'ERROR',
    SqlState.InvalidParameterValue,
    `encoding "${encoding}" does not match locale "C.UTF-8"`,
    {
      detail: 'The chosen LC_CTYPE setting requires encoding "UTF8": every database of this server is UTF8.',
    },
  )
}
