"""CPU kernel: topk."""
