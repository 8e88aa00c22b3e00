"""Second factors: authenticator apps (TOTP), passkeys and recovery codes, and the account state they make."""
