-- 009 what a search run was for. 'search': a strategy's search (a create-date window, or asking again
-- for PMIDs EFetch did not return): its hits are what PRISMA counts as identified. 'refetch': the
-- modification-date search that fetches stored records again because PubMed changed them: nothing is
-- identified by it, so PRISMA leaves its hits out.
ALTER TABLE search_runs ADD COLUMN kind VARCHAR DEFAULT 'search';
UPDATE search_runs SET kind = 'search' WHERE kind IS NULL;
