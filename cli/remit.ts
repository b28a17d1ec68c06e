// `remit`: the operator CLI. Run through bin/remit.mjs (`npx remit ...`) or `npm run remit -- ...`.
// Exit codes: 0 done (audit: clean), 1 failed (audit: violations), 2 bad flags or input.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CliError, UsageError, parse, type Command, type Io } from './args';
import { audit } from './commands/audit';
import { operation } from './commands/operate';
import { replay } from './commands/replay';
import { report } from './commands/report';

export const COMMANDS: Command[] = [report, operation('reset'), operation('recalculate'), operation('retry'), audit, replay];

function overview(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: remit <command> [options]      remit <command> --help

The remit operator CLI: what was remitted and what not, operator actions, audits, bulk replays.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

Every command takes --help and --json; those that change anything change nothing without --yes
(they show the dry run and stop; --dry-run does only that).
Where the stack is: flags (--api, --token-file, --database, --temporal-address), else the environment
(REMIT_API_URL, REMIT_OPERATOR_TOKEN_FILE or REMIT_OPERATOR_TOKEN, DATABASE_URL, TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE; TLS and API key only from TEMPORAL_TLS_* / TEMPORAL_API_KEY[_FILE], as the services
read them), else
.remit/local-stack.json written by the local stack (npm start), in the current directory or the
repository root. --stack FILE (or REMIT_STACK_FILE) names another file; REMIT_STACK_FILE=none
ignores it.
Exit codes: 0 done (audit: clean), 1 failed (audit: violations found), 2 bad flags or input.
`;
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(overview());
    return 2;
  }
  if (name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    io.out(overview());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    io.out(version());
    return 0;
  }
  const wanted = name === 'help' ? rest[0] : name;
  const cmd = COMMANDS.find((c) => c.name === wanted);
  try {
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(wanted)}; commands: ${COMMANDS.map((c) => c.name).join(', ')}`);
    if (name === 'help') {
      io.out(cmd.help);
      return 0;
    }
    const { values, positionals } = parse(cmd, rest);
    if (values.help) {
      io.out(cmd.help);
      return 0;
    }
    return await cmd.run(values, positionals, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`remit${cmd ? ` ${cmd.name}` : ''}: ${err.message}`);
      io.err(`Run 'remit ${cmd ? `${cmd.name} ` : ''}--help' for usage.`);
      return err.exitCode;
    }
    if (err instanceof CliError) {
      io.err(`remit${cmd ? ` ${cmd.name}` : ''}: ${err.message}`);
      return err.exitCode;
    }
    io.err(`remit${cmd ? ` ${cmd.name}` : ''}: unexpected error: ${(err as Error)?.stack ?? String(err)}`);
    return 1;
  }
}

/** Run as the `remit` process: real stdio, exit code. bin/remit.mjs calls it in its own process. */
export function runAsProcess(argv: string[]): void {
  const io: Io = {
    out: (l = '') => process.stdout.write(`${l}\n`),
    err: (l = '') => process.stderr.write(`${l}\n`),
    env: process.env,
    cwd: process.cwd(),
  };
  // Exit as soon as the output is flushed: idle keep-alive sockets must not hold the process.
  const exit = (code: number) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  main(argv, io).then(exit, (err: unknown) => {
    process.stderr.write(`remit: ${String((err as Error)?.stack ?? err)}\n`);
    exit(1);
  });
}

if (require.main === module) runAsProcess(process.argv.slice(2));
