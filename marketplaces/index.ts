// The marketplace gateway the activities use: routes each record to its marketplace's batcher
// (coalescing + rate limit) and ambiguous outcomes to that marketplace's resolver. Adding a
// marketplace means one more entry here; no workflow or activity changes.

import { readFileSync } from 'node:fs';
import type { RemitConfig } from '../config/env';
import type { Database } from '../db/client';
import { recentPendingRecord } from '../db/records';
import { createPgRateLimiter } from './rate-limiter';
import type { Marketplace } from '../domain/key';
import type { Logger } from '../lib/log';
import { awsGroupKey, createAwsMarketplace } from './aws';
import { createAzureMarketplace } from './azure';
import { createBatcher, createInProcessRateLimiter, type Batcher, type RateLimiter, type SubmitHooks } from './batcher';
import type { MarketplaceClient, SendOutcome, UsageRecord } from './types';

export interface MarketplaceGateway {
  submit(record: UsageRecord, hooks?: SubmitHooks): Promise<SendOutcome>;
  resolve(record: UsageRecord): Promise<SendOutcome>;
  close(): Promise<void>;
}

interface Lane {
  client: MarketplaceClient & { close?(): void };
  batcher: Batcher;
  /**
   * Admits one marketplace call outside the batcher (a resolve). Every attempt after a retryable
   * or lost answer is a resolve, so without this a throttling storm or an outage would be met by
   * one unthrottled call per waiting record: more throttling, and unconfirmed records running
   * into their deadlines (found by npm run chaos).
   */
  admit?(record: UsageRecord): Promise<void | (() => void)>;
}

export function gatewayOf(lanes: Partial<Record<Marketplace, Lane>>): MarketplaceGateway {
  // A marketplace without configuration is an operator problem, not a transient one: the record
  // fails visibly (and is billed again by a later hour once it is configured).
  const unconfigured = (r: UsageRecord): Promise<SendOutcome> =>
    Promise.resolve({ kind: 'terminal', code: 'marketplace_rejected', reason: `marketplace ${r.customer.marketplace} is not configured on this worker` });
  return {
    submit: (r, hooks) => lanes[r.customer.marketplace]?.batcher.submit(r, hooks) ?? unconfigured(r),
    async resolve(r) {
      const lane = lanes[r.customer.marketplace];
      if (!lane) return unconfigured(r);
      let release: void | (() => void);
      try {
        release = await lane.admit?.(r);
      } catch (err) {
        return { kind: 'retryable', code: 'unknown', reason: `rate limiter failed: ${(err as Error)?.message ?? String(err)}; nothing was sent` };
      }
      try {
        return await lane.client.resolve(r);
      } finally {
        if (typeof release === 'function') release();
      }
    },
    async close() {
      for (const l of Object.values(lanes)) {
        await l?.batcher.drain();
        l?.client.close?.();
      }
    },
  };
}

/** Build the gateway from configuration (the emulators' endpoints in the local stack). */
export async function createMarketplaceGateway(cfg: RemitConfig, log: Logger, opts: { rateLimiter?: RateLimiter; database?: Database; lingerMs?: number } = {}): Promise<MarketplaceGateway> {
  const { hourMs } = cfg.time;
  // With a database, the marketplace's limit holds across every worker; without, per process.
  const rateLimiter = opts.rateLimiter ?? (opts.database ? createPgRateLimiter(opts.database, { callsPerSecond: 10 }) : createInProcessRateLimiter({ callsPerSecond: 10 }));
  // A burst of remittances closing together reaches the workers over seconds, not at once: a
  // partial batch waits while records keep coming (up to 1 s between them, at most 10 s in all,
  // both bounded by a small share of the hour so scaled test hours stay scaled). Against a
  // 6-hour acceptance window that delay is nothing; it is what fills 25-record calls.
  const lingerMs = opts.lingerMs ?? Math.min(1000, hourMs / 20);
  const maxLingerMs = Math.min(30_000, hourMs / 2);
  // Records made with something to send but not yet handed to a batcher are on their way (their
  // workflows are starting): a partial batch waits for them (bounded by maxLingerMs).
  const database = opts.database;
  const moreExpected = database ? (r: UsageRecord) => recentPendingRecord(database, r.customer.marketplace) : undefined;
  const aws = createAwsMarketplace({ endpoint: cfg.awsMeteringEndpoint, region: cfg.awsRegion, acceptanceHours: cfg.time.acceptanceHours.aws, hourMs, log });
  const lanes: Partial<Record<Marketplace, Lane>> = {
    aws: {
      client: aws,
      batcher: createBatcher({ client: aws, groupKey: (r) => awsGroupKey(r, cfg.awsRegion), rateKey: () => `aws|${cfg.awsRegion}`, lingerMs, maxLingerMs, moreExpected, rateLimiter, isExpired: (r) => aws.isExpired(r), log }),
      admit: () => rateLimiter.acquire(`aws|${cfg.awsRegion}`),
    },
  };
  if (cfg.azureMeteringEndpoint && cfg.azureClientSecret) {
    const azure = createAzureMarketplace({
      endpoint: cfg.azureMeteringEndpoint,
      authorityHost: cfg.azureAuthorityHost,
      tenantId: cfg.azureTenantId,
      clientId: cfg.azureClientId,
      clientSecret: cfg.azureClientSecret,
      caPem: cfg.extraCaCertFile ? readFileSync(cfg.extraCaCertFile, 'utf8') : undefined,
      hourMs,
      acceptanceHours: cfg.time.acceptanceHours.azure,
      log,
    });
    lanes.azure = {
      client: azure,
      batcher: createBatcher({ client: azure, groupKey: () => 'azure', rateKey: () => 'azure', lingerMs, maxLingerMs, moreExpected, rateLimiter, isExpired: (r) => azure.isExpired(r), log }),
      admit: () => rateLimiter.acquire('azure'),
    };
  } else {
    log.warn('Azure is not configured (AZURE_METERING_ENDPOINT, AZURE_CLIENT_SECRET): Azure remittances will fail until it is');
  }
  return gatewayOf(lanes);
}
