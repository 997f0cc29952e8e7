-- Sites whose picture changed since the evaluator last looked: it re-checks
-- those at once, and every site on its timer.
CREATE TABLE changed_sites (
    site_id text PRIMARY KEY
);
