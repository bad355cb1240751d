"""Workflows: CNCF Serverless Workflow DSL 1.0 documents, parsed into plans of tasks."""
