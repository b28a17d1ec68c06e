// Plain-text tables for people; `--json` prints the data itself.

/** Left-aligned columns, numbers right-aligned; the last column is never padded. */
export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>, opts: { indent?: string } = {}): string[] {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) =>
    (opts.indent ?? '') +
    r
      .map((c, i) => (i === r.length - 1 && !numeric[i] ? c : numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)];
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** One line: newlines and runs of spaces folded. */
export function oneLine(s: string | null | undefined): string {
  return (s ?? '').replace(/\s+/g, ' ').trim();
}

export function printJson(out: (l: string) => void, value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** A shell word, single-quoted when it needs to be. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
