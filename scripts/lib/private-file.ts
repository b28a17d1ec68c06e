// Files that hold secrets (the local stack's tokens): readable by their owner only, even when an
// older version left the file world-readable, and replaced atomically so that a reader (the CLI)
// never sees half of one.

import { chmodSync, renameSync, rmSync, writeFileSync } from 'node:fs';

export function writePrivateFile(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600); // the umask could have narrowed it further, never widened; be exact
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
