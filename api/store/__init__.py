"""The SQL store: experiments, variants, allocation versions and audit events."""
