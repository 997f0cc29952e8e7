-- Delivered events are kept for a while (KANBAN_OUTBOX_RETENTION_SECONDS), then
-- deleted: this finds them without reading the pending ones or the whole table.
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
