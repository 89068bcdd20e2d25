"""Small, pure policies the reconcile core applies: one decision each (retries, alarms,
frozen-role servers, readiness of the services stages wait for, deleting a run's artifacts)."""
