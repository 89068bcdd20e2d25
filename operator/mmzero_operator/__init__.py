"""The MMZeroRun operator: kopf handlers (thin) over a pure reconcile core, and the CRD."""
