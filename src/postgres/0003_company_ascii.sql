-- Version 3: an account's records are found by the index. The readers compare companies ignoring ASCII case
-- (`Acme.example` is `acme.example`), so an equality on the column could not narrow their filter; the index is
-- on the company with ASCII letters lowered (`translate`, immutable and the same in every locale — `lower()`
-- follows the database's locale, which in a Turkish one lowers `I` to `ı`), and the readers ask for exactly
-- that expression.
CREATE INDEX concierge_record_company_ascii ON concierge_record
    (translate(company, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), time)
    WHERE company IS NOT NULL;
DROP INDEX concierge_record_company;
