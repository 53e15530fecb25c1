"""`batchit serve`: an HTTP API that queues builds and hands out their records (SPEC section 4)."""
