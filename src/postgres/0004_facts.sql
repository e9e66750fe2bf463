-- Version 4: the experiment report reads the columns, not the line. An exposure's or conversion's fields as the
-- report reads them (`experiments::report::Fact`, the shipper's parse of the line with the report's own
-- parser) are kept beside the line, and a covering index holds them, so the report over millions of records is
-- an index-only scan and no JSON parse (the report parsing every line was most of its 14.5 s over 10 M rows).
-- `arm` is set exactly when the row has a fact; every other row of the types the report reads (one written
-- before this version, or one the report's parser refuses) is read by its line, so the store's report stays
-- the folders'. `concierge audit verify --postgres` checks these columns against the line, as the others.
-- Rows shipped before this version keep NULLs (rows are append-only): the report reads their lines.
ALTER TABLE concierge_record
    ADD COLUMN fact_time text,
    ADD COLUMN arm text,
    ADD COLUMN account text,
    ADD COLUMN visitor text,
    ADD COLUMN goal text,
    ADD COLUMN control double precision;
CREATE INDEX concierge_record_fact ON concierge_record (stream, time)
    INCLUDE (type, experiment, arm, account, visitor, goal, control, fact_time)
    WHERE arm IS NOT NULL;
-- The report's records without a fact, read by their line (empty unless rows predate version 4).
CREATE INDEX concierge_record_no_fact ON concierge_record (stream, time)
    WHERE arm IS NULL AND type IN ('exposure', 'conversion');
