-- Emails go through the outbox too. Their destination is the one mail relay, so unlike a
-- webhook endpoint or a CRM connection it does not say whose message it is: the owning account
-- is kept here (NULL for a message of no account, e.g. the summary of an unlicensed meeting),
-- and the account's outbox lists its messages by it.
ALTER TABLE outbox_messages ADD COLUMN account_id TEXT;
CREATE INDEX outbox_messages_account ON outbox_messages(account_id, status);
