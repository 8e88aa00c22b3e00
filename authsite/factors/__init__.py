"""Second factors: authenticator apps (TOTP) and recovery codes, and the account state they make."""
