-- Each loop's WIP, kept by every write of one of its cards (storage.set_card and
-- delete_card), so that an evaluation round need not sum a site's cards.
ALTER TABLE loops ADD COLUMN wip_units bigint NOT NULL DEFAULT 0;

UPDATE loops l SET wip_units = counted.units
FROM (SELECT c.site_id, c.loop_id,
             sum(CASE c.state WHEN 'FULL' THEN c.quantity
                              WHEN 'IN_PROCESS' THEN l2.container_quantity
                              ELSE 0 END) AS units
      FROM cards c JOIN loops l2 USING (site_id, loop_id)
      GROUP BY c.site_id, c.loop_id) AS counted
WHERE l.site_id = counted.site_id AND l.loop_id = counted.loop_id;
