-- When an account API key was last used, to the hour: lets an account see which keys are idle
-- before revoking them. Written at most once an hour per key, so authentication stays a read.
ALTER TABLE account_api_keys ADD COLUMN last_used_at TEXT;
