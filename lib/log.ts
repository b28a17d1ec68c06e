// One pino logger for the process. Child loggers carry the remittance key and workflow id.
// Secrets never reach logs: tokens, client secrets and authorization headers are redacted.

import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(name: string, level = process.env.LOG_LEVEL || 'info'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: ['*.authorization', '*.Authorization', 'headers.authorization', 'req.headers.authorization', '*.token', '*.clientSecret', '*.client_secret', '*.access_token', '*.password', '*.secret'],
      censor: '[redacted]',
    },
  });
}
