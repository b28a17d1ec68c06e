// The workflow bundle's entry point: every workflow the worker runs.
export { marketplaceRecordWorkflow } from './remittance';
export { sweepWorkflow } from './sweep';
export { usagePullWorkflow } from './usage-pull';
