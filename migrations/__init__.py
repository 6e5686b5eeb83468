"""Alembic environment and versions for the SQL store."""
