"""The results store's migrations: Alembic revisions in versions/, run by
labctl.results.migrate."""
