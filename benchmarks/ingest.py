"""Ingest benchmark: parse + dedupe + append throughput, and the cost of a quiet night.

    python benchmarks/ingest.py            # full run (50,000 records; 10k vs 1M-record warehouses)
    python benchmarks/ingest.py --quick    # smaller, for a smoke test

(a) Throughput. Every PubmedArticle of the real fixtures in ../shared/data/pubmed/fixtures (DTD
pubmed_250101) is re-keyed into N load copies: new PMID, new DOI, title + " [load copy k]" so
nothing merges. They are written as efetch-like XML files of 5,000 articles under
benchmarks/.cache/ (git-ignored). The pipeline (warehouse.ingest: parse in worker processes,
dedupe and append in this one, one transaction per 2,000 records) runs on all of them into a new
warehouse; Bio.Entrez.read (validate=True, its default, and validate=False) parses the first file
in the same run. Entrez.read only parses; the pipeline also dedupes and commits.

(b) Quiet night. Warehouses of 10,000 and 1,000,000 records are generated with SQL (cached under
benchmarks/.cache/), then a nightly pass that finds nothing new runs on each: open a nightly
run; per strategy: last committed window, open a search run, `known_pmids` on the search's ids
(all known) → `link_known_records` (provenance rows for this run) → nothing fetched or appended,
close the search run, commit the window; close the nightly run (what flows/nightly does). The ids are the 2,000 PMIDs of the latest window (what an overlapping re-search
returns) and, as a worst case, 2,000 PMIDs spread over the whole warehouse.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CACHE = REPO / "benchmarks" / ".cache"
FIXTURES = REPO.parent / "shared" / "data" / "pubmed" / "fixtures"
HEADER = (b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN"'
          b' "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n<PubmedArticleSet>\n')
FOOTER = b"</PubmedArticleSet>\n"
PER_FILE = 5_000
CPU: dict[int, tuple[float, float]] = {}  # id(IngestResult) -> (appending process, parser processes) µs/record
PMID_BASE = 900_000_000  # far above real PMIDs (~41M in 2026): load copies never collide with real ones


# ---------------------------------------------------------------------------------------------
# data


def template_articles() -> list[tuple[bytes, bytes, bytes | None]]:
    """(article XML, its PMID, its DOI) for every real PubmedArticle in the pubmed_250101 fixtures."""
    from lxml import etree

    out = []
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False, huge_tree=True)
    for path in sorted(FIXTURES.rglob("*.xml")):
        data = path.read_bytes()
        if b"pubmed_250101" not in data or b"<PubmedArticle>" not in data:
            continue
        root = etree.fromstring(data, parser)
        for art in root.iter("PubmedArticle"):
            pmid = art.findtext("MedlineCitation/PMID").encode()
            doi = art.findtext("PubmedData/ArticleIdList/ArticleId[@IdType='doi']")
            out.append((etree.tostring(art), pmid, doi.encode() if doi else None))
    return out


def _rekey_template(xml: bytes, pmid: bytes, doi: bytes | None) -> list[bytes]:
    """Split an article at its own PMID, DOI and title end, so copies are made by joining pieces."""
    own_pmid = b'<PMID Version="1">' + pmid + b"</PMID>"
    xml = xml.replace(own_pmid, b"\x00PMID\x00", 1)
    xml = xml.replace(b'<ArticleId IdType="pubmed">' + pmid + b"</ArticleId>", b'<ArticleId IdType="pubmed">\x00ID\x00</ArticleId>')
    if doi:
        xml = xml.replace(b">" + doi + b"<", b">\x00DOI\x00<")
    xml = xml.replace(b"</ArticleTitle>", b"\x00TITLE\x00</ArticleTitle>", 1)
    return re.split(rb"\x00(PMID|ID|DOI|TITLE)\x00", xml)


def write_load_files(n: int, templates) -> list[Path]:
    """N re-keyed copies as files of PER_FILE articles (reused when present)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    pieces = [_rekey_template(*t) for t in templates]
    paths = []
    for f in range((n + PER_FILE - 1) // PER_FILE):
        start, stop = f * PER_FILE, min(n, (f + 1) * PER_FILE)
        path = CACHE / f"ingest_load_{len(templates)}t_{start:07d}_{stop:07d}.xml"
        paths.append(path)
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(HEADER)
            for k in range(start, stop):
                parts = pieces[k % len(pieces)]
                new_pmid = str(PMID_BASE + k).encode()
                fill = {b"PMID": b'<PMID Version="1">' + new_pmid + b"</PMID>", b"ID": new_pmid,
                        b"DOI": b"10.99999/lr-load.%d" % k, b"TITLE": b" [load copy %d]" % k}
                fh.write(b"".join(fill[p] if i % 2 else p for i, p in enumerate(parts)))
                fh.write(b"\n")
            fh.write(FOOTER)
        tmp.rename(path)
    return paths


# ---------------------------------------------------------------------------------------------
# (a) throughput


def time_entrez(path: Path, validate: bool) -> tuple[int, float]:
    from Bio import Entrez

    with open(path, "rb") as fh:
        t0 = time.perf_counter()
        parsed = Entrez.read(fh, validate=validate)
        seconds = time.perf_counter() - t0
    return len(parsed["PubmedArticle"]) + len(parsed.get("PubmedBookArticle", [])), seconds


def time_iter_records(path: Path) -> tuple[int, float]:
    from models.pubmed import iter_records

    t0 = time.perf_counter()
    n = sum(1 for _ in iter_records(path))
    return n, time.perf_counter() - t0


def time_pipeline(paths: list[Path], workers: int, batch_size: int, tmpdir: Path) -> tuple[int, float, object]:
    from warehouse.db import migrate
    from warehouse.ingest import ingest_files

    db_path = tmpdir / f"throughput_{workers}_{len(paths)}.duckdb"
    migrate(db_path)
    cpu0 = os.times()
    t0 = time.perf_counter()
    result = ingest_files(db_path, "bench-run", "load", paths, batch_size=batch_size, workers=workers)
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    from warehouse.db import fetchall

    stored = fetchall(db_path, "SELECT count(*) FROM records")[0][0]
    assert stored == result.counts.new == result.records, (stored, result)
    # CPU per record: this (appending) process, and the parser processes (reaped when the pool closes)
    own = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / result.records * 1e6
    parsers = (cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system) / result.records * 1e6
    CPU[id(result)] = (own, parsers)
    return result.records, seconds, result


# ---------------------------------------------------------------------------------------------
# (b) quiet night


def quiet_warehouse(n: int) -> Path:
    """A migrated warehouse of n records (content cycled from real titles/abstracts), cached."""
    from warehouse.db import migrate, transaction

    path = CACHE / f"quiet_{n}.duckdb"
    if path.exists():
        migrate(path)
        return path
    tmp = CACHE / f"quiet_{n}.building.duckdb"
    for leftover in (tmp, Path(str(tmp) + ".wal")):
        leftover.unlink(missing_ok=True)
    migrate(tmp)
    with transaction(tmp) as con:
        con.execute("""
            INSERT INTO records (pmid, doi, doi_key, title, abstract, journal, year, authors, mesh,
                publication_types, language, keywords, comments_corrections, history, kind, title_key,
                content_hash, version, first_seen_run, last_updated_run)
            SELECT (40000000 + i)::VARCHAR, '10.99999/lr-quiet.' || i, '10.99999/lr-quiet.' || i,
                'Load record ' || i || ' of a synthetic warehouse', repeat('Synthetic abstract text. ', 60),
                'J Load', 1990 + i % 36, ['Doe J', 'Roe R', 'Poe E'], ['Humans', 'Infant', 'Object Attachment'],
                ['Journal Article'], 'eng', [], '[]', '{"entrez": "2024-01-01"}', 'article',
                'load record ' || i || ' of a synthetic warehouse|' || (1990 + i % 36), md5(i::VARCHAR), 1,
                'seed-run', 'seed-run'
            FROM range(1, $n + 1) t(i)""", {"n": n})
        con.execute("""
            INSERT INTO record_versions (record_id, version, content_hash, data, run_id)
            SELECT record_id, 1, content_hash, to_json({'pmid': pmid, 'title': title, 'year': year}), 'seed-run'
            FROM records""")
        con.execute("""
            INSERT INTO record_sources (record_id, run_id, strategy, pmid_seen, matched_by)
            SELECT record_id, 'seed-run', 'rct-attachment', pmid, 'new' FROM records""")
        con.execute("""
            INSERT INTO search_hits (run_id, pmid, record_id, outcome)
            SELECT 'seed-run', pmid, record_id, 'new' FROM records""")
    tmp.rename(path)
    return path


def quiet_night(db_path: Path, ids_by_strategy: dict[str, list[str]]) -> float:
    from warehouse import records as wr

    t0 = time.perf_counter()
    nightly = wr.start_nightly_run(db_path, "snapshot", flow_run_id="bench")
    for strategy, ids in ids_by_strategy.items():
        last = wr.last_committed_window(db_path, strategy)
        start = last[1] if last else date(2024, 1, 1)
        end = date(2024, 12, 31)
        run = wr.start_search_run(db_path, nightly, strategy, "attachment[tiab]", "snapshot", start, end)
        known = wr.known_pmids(db_path, ids)
        assert len(known) == len(ids), f"{len(ids) - len(known)} ids unexpectedly unknown"
        wr.link_known_records(db_path, run, strategy, ids)  # provenance: this run found them again
        wr.finish_search_run(db_path, run, "completed", found=len(ids), warnings=[])
        wr.commit_window(db_path, strategy, start, end, run)
    wr.finish_nightly_run(db_path, nightly, "completed", {"new_records": 0})
    return time.perf_counter() - t0


def quiet_ids(n: int, n_ids: int = 2000) -> dict[str, list[str]]:
    """The search's ids: the latest window (what an overlapping re-search returns) and a spread."""
    recent = [str(40000000 + i) for i in range(n - n_ids + 1, n + 1)]
    spread = [str(40000000 + 1 + (k * (n - 1)) // (n_ids - 1)) for k in range(n_ids)]
    return {"latest window": recent, "spread": spread}


def time_quiet(sizes: list[int], repeats: int) -> dict[tuple[int, str], list[float]]:
    """Seconds per quiet night (all samples), sizes interleaved so load drifts hit both alike."""
    paths = {n: quiet_warehouse(n) for n in sizes}
    ids = {n: quiet_ids(n) for n in sizes}
    samples: dict[tuple[int, str], list[float]] = {}
    for rep in range(repeats + 1):
        for label in ("latest window", "spread"):
            for n in sizes:
                chosen = ids[n][label]
                seconds = quiet_night(paths[n], {"rct-attachment": chosen, "uk-interventions": chosen[:1000]})
                if rep:  # the first round warms the page cache
                    samples.setdefault((n, label), []).append(seconds)
    return samples


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--big", type=int, default=1_000_000, help="records in the large quiet-night warehouse")
    ap.add_argument("--workers", type=int, default=None, help="parser processes (default: cores - 1, at least 1)")
    ap.add_argument("--batch", type=int, default=2000, help="records per append transaction")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--only", choices=["throughput", "quiet"], help="run one part only")
    ap.add_argument("--no-compare-workers", dest="compare_workers", action="store_false",
                    help="skip the extra 2-parser-process run")
    ap.add_argument("--quick", action="store_true", help="10,000 records, 100k-record big warehouse, 3 repeats")
    args = ap.parse_args(argv)
    if args.only != "quiet" and not any(FIXTURES.rglob("*.xml")):
        ap.error(f"no PubMed XML in {FIXTURES}: the throughput part needs ../shared/data/pubmed/fixtures "
                 "beside the repository (or run --only quiet)")
    if args.quick:
        args.records, args.big, args.repeats = 10_000, 100_000, 3
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) - 1)

    import duckdb
    import lxml.etree
    import Bio

    print(f"# ingest benchmark  python {sys.version.split()[0]}  duckdb {duckdb.__version__}  "
          f"lxml {'.'.join(map(str, lxml.etree.LXML_VERSION))}  biopython {Bio.__version__}  "
          f"cores {os.cpu_count()}  load avg {os.getloadavg()[0]:.1f}")
    checks = []
    if args.only in (None, "throughput"):
        checks += run_throughput(args, workers)
    if args.only in (None, "quiet"):
        checks += run_quiet(args)
    print()
    print("## targets")
    for name, ok, value in checks:
        print(f"- {name}: {value} → {'met' if ok else 'NOT met'}")
    return 0


def run_throughput(args, workers: int) -> list[tuple[str, bool, str]]:
    templates = template_articles()
    t0 = time.perf_counter()
    paths = write_load_files(args.records, templates)
    sizes = sum(p.stat().st_size for p in paths)
    print(f"# load data: {args.records:,} records re-keyed from {len(templates)} real fixture articles, "
          f"{len(paths)} files, {sizes / 1e6:,.0f} MB ({sizes / args.records / 1e3:.1f} kB/article), "
          f"ready in {time.perf_counter() - t0:.1f} s")
    tmpdir = Path(tempfile.mkdtemp(prefix="lr-bench-"))
    try:
        first = paths[0]
        rows = []
        n, s = time_entrez(first, validate=True)
        entrez_rate = n / s
        rows.append(("Bio.Entrez.read (validate=True), parse only", "file 1", n, s))
        n, s = time_entrez(first, validate=False)
        rows.append(("Bio.Entrez.read(validate=False), parse only", "file 1", n, s))
        n, s = time_iter_records(first)
        rows.append(("models.pubmed.iter_records, parse only, 1 process", "file 1", n, s))
        n, s, r = time_pipeline([first], 0, args.batch, tmpdir)
        rows.append(("ingest (parse+dedupe+append), 1 process", "file 1", n, s, CPU[id(r)]))
        n, s, r = time_pipeline([first], workers, args.batch, tmpdir)
        rows.append((f"ingest (parse+dedupe+append), {workers} parser proc(s)", "file 1", n, s, CPU[id(r)]))
        n, s, result = time_pipeline(paths, workers, args.batch, tmpdir)
        rows.append((f"ingest (parse+dedupe+append), {workers} parser proc(s)", "all files", n, s, CPU[id(result)]))
        end_to_end = n / s
        if args.compare_workers and workers != 2:
            n2, s2, r2 = time_pipeline(paths, 2, args.batch, tmpdir)
            rows.append(("ingest (parse+dedupe+append), 2 parser procs", "all files", n2, s2, CPU[id(r2)]))
            end_to_end = max(end_to_end, n2 / s2)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    print()
    print(f"## (a) throughput  (append transactions of {args.batch:,} records; load avg now {os.getloadavg()[0]:.1f})")
    print(f"| {'pipeline':<56} | {'input':<9} | {'records':>8} | {'seconds':>8} | {'records/s':>9} | {'× Entrez.read':>13} "
          f"| {'CPU µs/record: main + parsers':>29} |")
    print(f"|{'-' * 58}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 11}|{'-' * 15}|{'-' * 31}|")
    for name, inp, n, s, *cpu in rows:
        cpu_text = f"{cpu[0][0]:>5.0f} + {cpu[0][1]:>5.0f}" if cpu else ""
        print(f"| {name:<56} | {inp:<9} | {n:>8,} | {s:>8.2f} | {n / s:>9,.0f} | {n / s / entrez_rate:>12.1f}× "
              f"| {cpu_text:>29} |")
    print(f"appended: {result.counts}")
    return [
        ("end to end ≥ 5,000 records/s", end_to_end >= 5000, f"{end_to_end:,.0f} records/s"),
        ("≥ 8× Bio.Entrez.read", end_to_end / entrez_rate >= 8, f"{end_to_end / entrez_rate:.1f}×"),
    ]


def run_quiet(args) -> list[tuple[str, bool, str]]:
    print()
    t0 = time.perf_counter()
    for n in (10_000, args.big):
        quiet_warehouse(n)
    print(f"# quiet-night warehouses ready in {time.perf_counter() - t0:.1f} s (cached in {CACHE.name}/)")
    quiet = time_quiet([10_000, args.big], args.repeats)
    labels = ("latest window", "spread")
    best = {key: min(v) for key, v in quiet.items()}
    median = {key: statistics.median(v) for key, v in quiet.items()}
    print(f"## (b) quiet night (no new records), {args.repeats} interleaved runs per cell: best (median); "
          f"load avg now {os.getloadavg()[0]:.1f}")
    print(f"| {'search ids':<14} | {'10,000 records':>17} | {f'{args.big:,} records':>19} | {'ratio best (median)':>19} |")
    print(f"|{'-' * 16}|{'-' * 19}|{'-' * 21}|{'-' * 21}|")
    for label in labels:
        small, big = (10_000, label), (args.big, label)
        print(f"| {label:<14} | {best[small] * 1000:>5.0f} ({median[small] * 1000:>5.0f}) ms | "
              f"{best[big] * 1000:>7.0f} ({median[big] * 1000:>5.0f}) ms | "
              f"{best[big] / best[small]:>10.2f} ({median[big] / median[small]:.2f}) |")
    ratio = best[(args.big, "latest window")] / best[(10_000, "latest window")]
    worst = best[(args.big, "spread")] / best[(10_000, "spread")]
    return [(f"quiet night {args.big:,} vs 10,000 ≤ 1.2", ratio <= 1.2, f"{ratio:.2f} (spread ids: {worst:.2f})")]


if __name__ == "__main__":
    raise SystemExit(main())
