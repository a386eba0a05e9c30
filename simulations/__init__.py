"""Network and fleet simulations of edgecut deployments (scripts; imported by nothing)."""
