-- 005: a version's content is stored once. The current version of a record lives in `records`;
-- `record_versions.data` holds the JSON of a version only once it has been superseded (the append
-- copies the outgoing content there before overwriting `records`). Writing every version's JSON
-- up front doubled the bytes of each append. Rows written before 005 keep their data.
-- `record_version_content` gives every version with its content, current ones included.

ALTER TABLE record_versions ALTER COLUMN data DROP NOT NULL;

CREATE VIEW record_version_content AS
SELECT v.record_id, v.version, v.content_hash, v.run_id, v.created_at,
       coalesce(v.data, CASE WHEN r.version = v.version THEN to_json({
           'pmid': r.pmid, 'title': r.title, 'abstract': r.abstract, 'journal': r.journal, 'year': r.year,
           'authors': r.authors, 'doi': r.doi, 'mesh': r.mesh, 'publication_types': r.publication_types,
           'language': r.language, 'comments_corrections': r.comments_corrections, 'history': r.history,
           'keywords': r.keywords, 'kind': r.kind, 'mesh_detail': r.mesh_detail}) END) AS data
FROM record_versions v LEFT JOIN records r ON r.record_id = v.record_id;
