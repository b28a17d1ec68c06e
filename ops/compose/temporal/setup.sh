#!/bin/sh
# The Temporal set-up job (temporalio/admin-tools), once the server answers: the namespace and
# remit's custom search attributes (workflows/definitions.ts, SA) on SQL visibility. Idempotent.
set -eu
NS="${TEMPORAL_NAMESPACE:-default}"
: "${TEMPORAL_ADDRESS:?}"

until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do echo 'waiting for Temporal'; sleep 2; done

if ! temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$NS" >/dev/null 2>&1; then
  temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$NS" --retention "${TEMPORAL_RETENTION:-30d}"
fi

# name type: what the workflows set and operators query (test/integration/compose.test.ts keeps
# this list equal to the code's).
for sa in \
  Marketplace:Keyword \
  BillingAccountId:Keyword \
  OrgId:KeywordList \
  ProductTag:Keyword \
  Metric:Keyword \
  RemittanceStatus:Keyword \
  RemittanceErrorCode:Keyword \
  RemittanceHour:Datetime; do
  name="${sa%%:*}"
  type="${sa#*:}"
  if temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" -n "$NS" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" -n "$NS" --name "$name" --type "$type"
  fi
done
echo "Temporal namespace $NS ready"
