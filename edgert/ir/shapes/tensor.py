"""Shape rules: tensor layer kinds."""
