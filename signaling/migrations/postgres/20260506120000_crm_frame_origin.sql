-- One CRM origin per account: the CRM connection's `frame_origin` is the deal card's only frame
-- ancestor. The card kept its own copy (`crm_card_settings.crm_origin`); where the connection
-- had none, the card's value moves to the connection before the card's column goes.
-- (Connections without either derive theirs from the amoCRM base URL or the Bitrix24 portal
-- when read.)

UPDATE crm_connections
SET frame_origin = (
    SELECT s.crm_origin FROM crm_card_settings s WHERE s.account_id = crm_connections.account_id
)
WHERE frame_origin IS NULL
  AND deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM crm_card_settings s WHERE s.account_id = crm_connections.account_id);

ALTER TABLE crm_card_settings DROP COLUMN crm_origin;

-- The secret columns of crm_connections, webhook_endpoints and crm_card_settings hold
-- `v1:<base64>` AES-256-GCM values from now on; the server seals plain-text rows at start
-- (see signaling/src/secrets), since that needs the key this SQL does not have.
