-- 008: the content of merged PMIDs, and PubMed's deletions. Nothing is overwritten or deleted.
--
-- record_alias_versions: a PMID merged into another record (record_aliases) keeps its own content,
-- version 1 written at the merge, a new version whenever that PMID's content changes upstream (e.g. it
-- becomes a Retracted Publication). A wrong merge can be undone from here; record_alias_content shows
-- each alias with its current content. Aliases merged before 008 get version 1 when next seen.
--
-- record_deletions: the PMIDs of <DeleteCitation> blocks (PubMed update files), one row per PMID and
-- source file (re-ingesting a file adds nothing). The record stays in `records`; deleted_records lists
-- the records whose own PMID was deleted. record_id is the record the PMID resolved to when the deletion
-- was seen (its own record, or the record it is an alias of; NULL if the warehouse did not hold it).

CREATE TABLE record_alias_versions (
    pmid          VARCHAR NOT NULL,
    version       INTEGER NOT NULL,
    record_id     BIGINT NOT NULL,       -- the record the PMID was merged into when this version was seen
    content_hash  VARCHAR NOT NULL,
    doi_key       VARCHAR,
    data          JSON NOT NULL,         -- Record.to_dict of the alias PMID's own content
    run_id        VARCHAR,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (pmid, version)
);

CREATE VIEW record_alias_content AS
SELECT a.pmid, a.record_id, a.matched_by, v.version, v.content_hash, v.data, v.run_id, v.created_at
FROM record_aliases a
LEFT JOIN (SELECT * FROM record_alias_versions
           QUALIFY row_number() OVER (PARTITION BY pmid ORDER BY version DESC) = 1) v ON v.pmid = a.pmid;

CREATE TABLE record_deletions (
    pmid        VARCHAR NOT NULL,
    record_id   BIGINT,
    run_id      VARCHAR,
    source      VARCHAR NOT NULL,      -- the update file's name (or another label of where it was seen)
    deleted_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (pmid, source)
);

CREATE VIEW deleted_records AS
SELECT r.record_id, r.pmid, min(d.deleted_at) AS deleted_at, arg_min(d.source, d.deleted_at) AS source,
       arg_min(d.run_id, d.deleted_at) AS run_id
FROM records r JOIN record_deletions d ON d.pmid = r.pmid
GROUP BY r.record_id, r.pmid;
