"""ARM's own resources: tenants, subscriptions, resource groups, providers and the generic resource list."""
