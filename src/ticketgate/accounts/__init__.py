"""Built-in accounts: users in SQL, argon2id passwords, RS256 tokens published as a JWKS."""
