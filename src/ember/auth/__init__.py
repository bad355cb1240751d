"""Who may call Ember's API: API keys with roles, and the audit of what they changed."""
