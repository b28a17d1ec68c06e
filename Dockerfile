# syntax=docker/dockerfile:1
# remit: one image for the API, the workers and the emulators (the command picks which).
#   docker build -t remit .
#   docker run remit                                   # the API (node --import tsx api/main.ts)
#   docker run remit node --import tsx workers/main.ts # a worker
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

# What runs: the code owned by root and read-only to the unprivileged `node` user.
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
COPY emulators ./emulators
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
