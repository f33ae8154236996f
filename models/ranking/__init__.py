"""Relevance ranking for title/abstract screening (scikit-learn, no Prefect, no I/O).

ASReview-style components:
- `features.RecordVectorizer`  weighted TF-IDF blocks (title+abstract uni/bigrams, MeSH, publication types);
  `fast_text.FastTfidf` is an exact, faster transform for scoring large pools
- `classifier.RelevanceClassifier`  balanced linear SVM, Platt-calibrated probabilities
- `balance.BalancedWeights`  includes carry `ratio` × the excludes' total weight
- `query.MaxWithAudit`  most-likely-relevant first plus a random audit share
- `cold_start.cold_start_scores`  similarity to the review question, strategy terms and seed studies
- `simulation.simulate_screening`  the active-learning replay behind `living-review simulate`
- `pipeline.RankingModel`  the production model the nightly ranking job trains and stores
- `metrics`  WSS@95 (strict), recall@10%, records screened to a recall level
Recall bounds live in `models.recall`.
"""
