"""Shape rules: conv layer kinds."""
