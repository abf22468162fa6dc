"""Cost control at the edge: the store of budget spend kept in step with
the call layer's ledger, and alerts sent to a webhook."""
