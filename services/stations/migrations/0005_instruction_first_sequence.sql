-- The sequence an instruction was first announced with. A cut announces it again
-- with a new one; a terminal that saw only the first must still be told when it
-- is withdrawn.
ALTER TABLE instructions ADD COLUMN first_sequence bigint;
UPDATE instructions SET first_sequence = sequence;
ALTER TABLE instructions ALTER COLUMN first_sequence SET NOT NULL;
