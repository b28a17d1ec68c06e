// The workflow bundle's entry point: every workflow the worker runs.
export { remittanceWorkflow } from './remittance';
export { sweepWorkflow } from './sweep';
export { usagePullWorkflow } from './usage-pull';
