"""kopf handlers (one module per kind) and the pure phase/condition transitions they use."""
