"""Who is asking, and what they may do: users, API tokens, sign-in and roles."""
