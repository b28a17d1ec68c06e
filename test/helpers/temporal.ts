// The Temporal dev server that `npm test` started (scripts/test.ts), as the tests see it.

import { Client, Connection } from '@temporalio/client';

export interface TestTemporal {
  /** host:port of the frontend. */
  address: string;
  namespace: string;
  /** The Temporal CLI the runner used, for tests that drive `temporal ...` commands. */
  cliPath: string;
}

export function testTemporal(): TestTemporal {
  const address = process.env.TEMPORAL_ADDRESS;
  const cliPath = process.env.TEMPORAL_CLI_PATH;
  if (!address || !cliPath) {
    throw new Error(
      'TEMPORAL_ADDRESS / TEMPORAL_CLI_PATH are not set: run the tests with `npm test`, which starts a Temporal dev server with the search attributes and sets them.',
    );
  }
  return { address, namespace: process.env.TEMPORAL_NAMESPACE || 'default', cliPath };
}

export interface TestTemporalClient {
  client: Client;
  connection: Connection;
  namespace: string;
  close(): Promise<void>;
}

/** A Client on the test server; call close() in an after() hook. */
export async function connectTestClient(): Promise<TestTemporalClient> {
  const { address, namespace } = testTemporal();
  const connection = await Connection.connect({ address });
  const client = new Client({ connection, namespace });
  return { client, connection, namespace, close: () => connection.close() };
}
