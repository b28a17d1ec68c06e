// The marketplace gateway the activities use: routes each record to its marketplace's batcher
// (coalescing + rate limit) and ambiguous outcomes to that marketplace's resolver. Adding a
// marketplace means one more entry here; no workflow or activity changes.

import { readFileSync } from 'node:fs';
import type { RemitConfig } from '../config/env';
import type { Marketplace } from '../domain/key';
import type { Logger } from '../lib/log';
import { awsGroupKey, createAwsMarketplace } from './aws';
import { createAzureMarketplace } from './azure';
import { createBatcher, createInProcessRateLimiter, type Batcher, type RateLimiter } from './batcher';
import type { MarketplaceClient, SendOutcome, UsageRecord } from './types';

export interface MarketplaceGateway {
  submit(record: UsageRecord): Promise<SendOutcome>;
  resolve(record: UsageRecord): Promise<SendOutcome>;
  close(): Promise<void>;
}

interface Lane {
  client: MarketplaceClient & { close?(): void };
  batcher: Batcher;
}

export function gatewayOf(lanes: Partial<Record<Marketplace, Lane>>): MarketplaceGateway {
  // A marketplace without configuration is an operator problem, not a transient one: the record
  // fails visibly (and is billed again by a later hour once it is configured).
  const unconfigured = (r: UsageRecord): Promise<SendOutcome> =>
    Promise.resolve({ kind: 'terminal', code: 'marketplace_rejected', reason: `marketplace ${r.customer.marketplace} is not configured on this worker` });
  return {
    submit: (r) => lanes[r.customer.marketplace]?.batcher.submit(r) ?? unconfigured(r),
    resolve: (r) => lanes[r.customer.marketplace]?.client.resolve(r) ?? unconfigured(r),
    async close() {
      for (const l of Object.values(lanes)) {
        await l?.batcher.drain();
        l?.client.close?.();
      }
    },
  };
}

/** Build the gateway from configuration (the emulators' endpoints in the local stack). */
export async function createMarketplaceGateway(cfg: RemitConfig, log: Logger, opts: { rateLimiter?: RateLimiter; lingerMs?: number } = {}): Promise<MarketplaceGateway> {
  const { hourMs } = cfg.time;
  const rateLimiter = opts.rateLimiter ?? createInProcessRateLimiter({ callsPerSecond: 10 });
  const lingerMs = opts.lingerMs ?? 50;
  const aws = createAwsMarketplace({ endpoint: cfg.awsMeteringEndpoint, region: cfg.awsRegion, acceptanceHours: cfg.time.awsAcceptanceHours, hourMs, log });
  const lanes: Partial<Record<Marketplace, Lane>> = {
    aws: {
      client: aws,
      batcher: createBatcher({ client: aws, groupKey: (r) => awsGroupKey(r, cfg.awsRegion), rateKey: () => `aws|${cfg.awsRegion}`, lingerMs, rateLimiter, isExpired: (r) => aws.isExpired(r), log }),
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
      acceptanceHours: cfg.time.azureAcceptanceHours,
      log,
    });
    lanes.azure = {
      client: azure,
      batcher: createBatcher({ client: azure, groupKey: () => 'azure', rateKey: () => 'azure', lingerMs, rateLimiter, isExpired: (r) => azure.isExpired(r), log }),
    };
  } else {
    log.warn('Azure is not configured (AZURE_METERING_ENDPOINT, AZURE_CLIENT_SECRET): Azure remittances will fail until it is');
  }
  return gatewayOf(lanes);
}
