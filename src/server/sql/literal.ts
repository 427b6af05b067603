// A string as an SQL literal, for the statements the server writes itself (standard_conforming_strings is on).

/** `text` quoted as an SQL string literal: its single quotes doubled. */
export const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`
