-- The bank's reference of a transfer (the payment order's number) as the operator registered it,
-- so a payment can be matched to the bank statement; NULL for card payments.
ALTER TABLE payments ADD COLUMN reference TEXT;
