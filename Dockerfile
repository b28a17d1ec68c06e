# syntax=docker/dockerfile:1
# remit: one image for the API and the workers (the command picks which), product code only.
#   docker build -t remit .
#   docker run remit                                   # the API (node --import tsx api/main.ts)
#   docker run remit node --import tsx workers/main.ts # a worker
# The marketplace and usage-source emulators are development tooling (scripts/emulators/): a
# separate target, `docker build --target emulators`, which docker-compose's `emulators` profile uses.
# TypeScript runs through tsx at the exact version package-lock.json pins (a production
# dependency); the Temporal workflow bundle is built here, once, and workers load it
# (REMIT_WORKFLOW_BUNDLE_PATH) instead of bundling at every start.

ARG NODE_IMAGE=node:22-bookworm-slim

# Production dependencies only, exactly as locked.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# The workflow bundle (webpack through @temporalio/worker, a production dependency).
FROM deps AS bundle
COPY . .
RUN node --import tsx scripts/bundle-workflows.ts /app/dist/workflow-bundle.js

# The emulators (docker compose --profile emulators): scripts/emulators/ and the configuration
# code it reads (catalog, time settings, config/env.ts's defaults), never in the product image.
FROM ${NODE_IMAGE} AS emulators
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY config ./config
COPY domain ./domain
COPY workflows/definitions.ts ./workflows/definitions.ts
COPY scripts/emulators ./scripts/emulators
USER node

# What runs (the default target, so last): the code owned by root and read-only to the
# unprivileged `node` user.
FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    REMIT_WORKFLOW_BUNDLE_PATH=/app/dist/workflow-bundle.js \
    REMIT_API_HOST=0.0.0.0 \
    REMIT_API_PORT=8080
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY activities ./activities
COPY api ./api
COPY bin ./bin
COPY cli ./cli
COPY config ./config
COPY db ./db
COPY domain ./domain
COPY lib ./lib
COPY marketplaces ./marketplaces
COPY operations ./operations
COPY usage ./usage
COPY workers ./workers
COPY workflows ./workflows
COPY --from=bundle /app/dist/workflow-bundle.js ./dist/workflow-bundle.js
USER node
EXPOSE 8080 9464
CMD ["node", "--import", "tsx", "api/main.ts"]
