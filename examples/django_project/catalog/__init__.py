"""The catalogue: products, and the permission to reindex them."""
