-- Who did what: every mutation and every refused attempt, in every service.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    site_id    text NOT NULL,
    actor      text NOT NULL,
    roles      text[] NOT NULL,
    station_id text NOT NULL,
    rpc        text NOT NULL,
    request_id text NOT NULL,
    -- What the request was about, e.g. "card_code=P-001".
    target     text NOT NULL,
    before     text NOT NULL,
    after      text NOT NULL,
    -- "OK", or the refusal: its status code and reason.
    result     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_by_site ON audit_log (site_id, id);

-- Append-only: the services only ever insert; the database refuses the rest.
CREATE FUNCTION refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
